"""Statistics of adversarial perturbations, and one example image (DRA: Hou et al., IJCNN 2022,
Fig. 3: "A visual comparison of PGD (left) and DRA (right) adversaries. They are both able to
fool DNNs with imperceptible noises, however, the overall noise budget of DRA is smaller …
DRA noises align well with the salient map of the cat").

What it measures, for each named attack (run on the evaluated model, eval-mode BatchNorm,
each with the attack protocols' generator stream), with δ = x* − x per test example:
  l0 (% of the C·H·W coordinates with δ ≠ 0), l1 (‖δ‖₁), l2 (‖δ‖₂), linf (‖δ‖∞ ·255), means
  over the test set; fooled (% of clean-correct examples misclassified at x*); robust (accuracy %);
  saliency (mean over examples of Spearman's ρ between |δ| and |∇x CE(f(x), y)|, the saliency
  map, with average ranks for ties; an example whose |δ| is constant gets ρ = 0).
And the test example ``index`` (CIFAR-10's test image 0 is a cat): its pixels, label and
prediction, each attack's x*, δ and prediction, and its saliency map, for the figure.
Arguments (defaults): attacks ({name: attack config}, required: e.g. {pgd: {...}, dra: {...}}),
index (0). Input range [0, 1]. Result: n, clean, per attack {l0, l1, l2, linf, fooled, robust,
saliency}, and ``image`` {index, label, pred, x, saliency, <attack>: {x_adv, delta, pred}} (lists).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..attacks import ATTACKS, build as build_attack
from ..attacks.base import model_mode
from ..errors import SpecError
from ..provenance import source_hash
from . import MEASURES
from .base import Measure


def saliency(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|∇x CE(f(x), y)| per example (eval mode)."""
    with model_mode(model, False), torch.enable_grad():
        x = x.detach().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x).float(), y, reduction="sum"), x)
    return grad.abs()


def spearman(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Spearman's ρ per row of ``a`` and ``b`` (average ranks for ties; 0 for a constant row)."""
    from scipy.stats import spearmanr

    out = []
    for u, v in zip(a.flatten(1).cpu().double().numpy(), b.flatten(1).cpu().double().numpy()):
        out.append(0.0 if u.min() == u.max() or v.min() == v.max() else float(spearmanr(u, v).statistic))
    return out


@MEASURES.register("perturbation")
class Perturbation(Measure):
    name = "perturbation"
    defaults = {"attacks": {}, "index": 0}

    @classmethod
    def validate(cls, params):
        if not params["attacks"]:
            raise SpecError("measure 'perturbation' needs attacks: {name: attack config}")
        for label, cfg in params["attacks"].items():
            if not isinstance(cfg, dict) or "name" not in cfg:
                raise SpecError(f"measure 'perturbation': attack {label!r} needs a name")
            ATTACKS.get(ATTACKS.check(cfg["name"])).check_params({k: v for k, v in cfg.items() if k != "name"})

    def evaluate(self, loader, seed: int = 0, progress=None) -> dict[str, Any]:
        from ..data.loader import epoch_generator

        attacks = {label: build_attack({"bn_mode": "eval", **cfg}, self.model) for label, cfg in self.attacks.items()}
        gens = {label: epoch_generator(loader.device, seed, 0, stream=1) for label in attacks}
        dev = loader.device
        sums = {label: {k: torch.zeros((), dtype=torch.float64, device=dev)
                        for k in ("l0", "l1", "l2", "linf", "fooled", "robust")} for label in attacks}
        rho: dict[str, list[float]] = {label: [] for label in attacks}
        clean = torch.zeros((), dtype=torch.long, device=dev)
        image: dict[str, Any] = {}
        seen = 0
        for x, y in loader.batches():
            with model_mode(self.model, False), torch.no_grad():
                pred = self.model(x).argmax(1)
            ok = pred == y
            clean += ok.sum()
            sal = saliency(self.model, x, y)
            here = 0 <= self.index - seen < len(y)
            if here:
                i = self.index - seen
                image = {"index": self.index, "label": int(y[i]), "pred": int(pred[i]), "x": x[i].tolist(),
                         "saliency": sal[i].tolist()}
            for label, attack in attacks.items():
                x_adv = attack(x, y, gens[label])
                delta = (x_adv - x).flatten(1)
                with model_mode(self.model, False), torch.no_grad():
                    pred_adv = self.model(x_adv).argmax(1)
                s = sums[label]
                s["l0"] += 100.0 * (delta != 0).double().mean(1).sum()
                s["l1"] += delta.abs().sum(1).double().sum()
                s["l2"] += delta.norm(dim=1).double().sum()
                s["linf"] += 255.0 * delta.abs().amax(1).double().sum()
                s["fooled"] += (ok & (pred_adv != y)).sum()
                s["robust"] += (ok & (pred_adv == y)).sum()
                rho[label] += spearman((x_adv - x).abs(), sal)
                if here:
                    image[label] = {"x_adv": x_adv[i].tolist(), "delta": (x_adv - x)[i].tolist(),
                                    "pred": int(pred_adv[i])}
            seen += len(y)
            if progress is not None:
                progress.update(1)
        if not image:
            raise SpecError(f"measure 'perturbation': index {self.index} is beyond the {loader.n} test images")
        n, n_ok = loader.n, clean.item()
        out: dict[str, Any] = {"n": n, "clean": 100.0 * n_ok / n, "image": image}
        for label, s in sums.items():
            v = {k: t.item() for k, t in s.items()}
            out[label] = {"l0": v["l0"] / n, "l1": v["l1"] / n, "l2": v["l2"] / n, "linf": v["linf"] / n,
                          "fooled": 100.0 * v["fooled"] / n_ok if n_ok else None, "robust": 100.0 * v["robust"] / n,
                          "saliency": sum(rho[label]) / n,
                          "attack": {"name": self.attacks[label]["name"], **attacks[label].params()}}
        out["implementation"] = (f"bench.measures.perturbation (source {source_hash([MEASURES.source_file('perturbation')])})"
                                 + "".join(f"; bench.attacks.{c['name']} (source {source_hash([ATTACKS.source_file(c['name'])])})"
                                           for c in self.attacks.values()))
        return out
