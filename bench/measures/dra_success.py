"""DRA's attack success rate against the fraction p of coordinates it keeps (DRA: Hou et al.,
IJCNN 2022, Fig. 4 and §V.D: "DRA's attack success rates versus the significant feature
percentage p on CIFAR-10 vanilla-trained ResNet models", ε ∈ {1, 2}, N = 3072 values).

What it measures: for each p of the grid, with k = round(p·N) coordinates kept, the success rate
  100 · #(clean-correct test examples that DRA_p misclassifies) / #(clean-correct examples)
(``definition: fooled_correct``; alternatives ``error``: 100 − robust accuracy over all examples,
and ``changed``: % of examples whose prediction DRA changes). With the attack's ``mask: final``
the T-step trajectory and the significance scores do not depend on p, so they are computed once
per batch and every p only re-masks them: the same x* as a DRA attack protocol with that p
(same seed and generator stream). With ``mask: every_step`` the attack is rerun for each p.

Arguments (defaults):
  attack (DRA ε = 1/255, T = 5, the suite's Algorithm 1 defaults: bench/attacks/dra.py; a setting's
      ε, a column's overrides and the scale's attack settings apply to it as to an attack protocol;
      its own ``p`` is ignored, the grid replaces it),
  p (the grid [0, 1/24, 1/12, 1/8, 1/6, 1/4, 1/3, 1/2, 2/3, 5/6, 1]: k = 0, 128, …, 3072 of 3072),
  definition ("fooled_correct" | "error" | "changed").
Input range [0, 1]. Result: n, clean, and per grid point keyed ``p<fraction>`` (``p1_3`` for 1/3,
``p0``, ``p1``): success_rate, robust (accuracy %), k; the attack's resolved parameters.
Model in eval mode; counts stay on the device until the end.
"""
from __future__ import annotations

from typing import Any

import torch

from ..attacks import ATTACKS, build as build_attack
from ..attacks.base import model_mode
from ..errors import SpecError
from ..numbers import parse_number
from ..provenance import source_hash
from . import MEASURES
from .base import Measure

GRID = ["0", "1/24", "1/12", "1/8", "1/6", "1/4", "1/3", "1/2", "2/3", "5/6", "1"]
DEFINITIONS = ("fooled_correct", "error", "changed")


def p_key(p: Any) -> str:
    """``1/3`` → ``p1_3``, ``0.5`` → ``p0p5``, ``1`` → ``p1`` (dotted-path safe, like sweep ids)."""
    return "p" + str(p).replace(".", "p").replace("/", "_")


@MEASURES.register("dra_success")
class DRASuccess(Measure):
    name = "dra_success"
    defaults = {"attack": {"name": "dra", "eps": "1/255", "steps": 5}, "p": GRID, "definition": "fooled_correct"}
    choices = {"definition": DEFINITIONS}

    @classmethod
    def validate(cls, params):
        if params["attack"].get("name") != "dra":
            raise SpecError(f"measure 'dra_success' needs a DRA attack, got {params['attack'].get('name')!r}")
        ATTACKS.get("dra").check_params({k: v for k, v in params["attack"].items() if k != "name"})
        for p in params["p"]:
            if not 0 <= parse_number(p) <= 1:
                raise SpecError(f"measure 'dra_success': p must be in [0, 1], got {p!r}")

    def evaluate(self, loader, seed: int = 0, progress=None) -> dict[str, Any]:
        from ..data.loader import epoch_generator

        attack = build_attack({**self.attack, "p": 1}, self.model)
        shared = attack.mask.value == "final"
        ps = [parse_number(p) for p in self.p]
        # the attack protocols' generator stream: one for the shared trajectory, else one per p,
        # so that every p draws exactly what a protocol of its own would
        gens = [epoch_generator(loader.device, seed, 0, stream=1) for _ in (ps[:1] if shared else ps)]
        dev = loader.device
        clean = torch.zeros((), dtype=torch.long, device=dev)
        correct = torch.zeros(len(ps), dtype=torch.long, device=dev)     # still right under DRA_p
        fooled = torch.zeros(len(ps), dtype=torch.long, device=dev)      # right on x, wrong on x*
        changed = torch.zeros(len(ps), dtype=torch.long, device=dev)
        ks: list[int] = []
        for x, y in loader.batches():
            with model_mode(self.model, False), torch.no_grad():
                pred = self.model(x).argmax(1)
            ok = pred == y
            clean += ok.sum()
            if shared:
                x_t, score = _trajectory(attack, x, y, gens[0])
            for i, p in enumerate(ps):
                attack.p = p
                k = attack.k(x)
                if len(ks) < len(ps):
                    ks.append(k)
                x_adv = attack.finish(x, x_t, score, k) if shared else attack(x, y, gens[i])
                with model_mode(self.model, False), torch.no_grad():
                    pred_adv = self.model(x_adv).argmax(1)
                correct[i] += (ok & (pred_adv == y)).sum()
                fooled[i] += (ok & (pred_adv != y)).sum()
                changed[i] += (pred_adv != pred).sum()
            if progress is not None:
                progress.update(1)
        n, n_ok = loader.n, clean.item()
        correct, fooled, changed = correct.tolist(), fooled.tolist(), changed.tolist()
        rates = {"fooled_correct": [100.0 * f / n_ok if n_ok else None for f in fooled],
                 "error": [100.0 - 100.0 * c / n for c in correct],
                 "changed": [100.0 * c / n for c in changed]}[self.definition]
        keys = [p_key(p) for p in self.p]
        return {"n": n, "clean": 100.0 * n_ok / n, "definition": self.definition,
                "success_rate": dict(zip(keys, rates)), "robust": {key: 100.0 * c / n for key, c in zip(keys, correct)},
                "k": dict(zip(keys, ks)), "p": list(self.p), "shared_trajectory": shared,
                "attack": {"name": "dra", **{k: v for k, v in attack.params().items() if k != "p"}},
                "implementation": f"bench.measures.dra_success (source {source_hash([MEASURES.source_file('dra_success')])}) "
                                  f"with bench.attacks.dra (source {source_hash([ATTACKS.source_file('dra')])})"}


def _trajectory(attack, x, y, g):
    """The attack's T steps and scores in its BatchNorm mode, without gradients kept."""
    with attack.running():
        x_t, score = attack.trajectory(x, y, g)
    return x_t.detach(), score.detach()
