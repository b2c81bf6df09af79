"""Adversarial perturbations as images (HE: Pang et al., NeurIPS 2020, Fig. 2 right: "we
visualize the untargeted perturbations on ImageNet"; AT_HE's ``ImageNet/evaluate.py -e``
saves the clean image, the adversarial one and the perturbation rescaled to (δ + ε)/(2ε)).

What it measures: ``attack`` (default: Table 4's PGD-50, ε 4/255, step 1/255) on the first
``n_images`` test images (in the loader's order); the images are stored as PNG (base64)
for the figure, together with the model's predictions and the clean and robust accuracy on
them. Arguments (defaults): attack (see above), n_images (4). Helper models: none.
Input range [0, 1]. Result: n, clean, robust, eps, images [{label, pred, pred_adv, x, x_adv,
delta}] (delta is (δ + ε)/(2ε) in [0, 1]).
"""
from __future__ import annotations

import base64
import io
from typing import Any

import torch

from ..attacks import build as build_attack
from ..attacks.base import model_mode
from ..errors import SpecError
from . import MEASURES
from .base import Measure

DEFAULT_ATTACK: dict[str, Any] = {"name": "pgd", "eps": "4/255", "step_size": "1/255", "steps": 50,
                                  "random_start": "uniform", "loss": "ce"}


def png(img: torch.Tensor) -> str:
    """A C×H×W image in [0, 1] as base64 PNG."""
    from PIL import Image

    a = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@MEASURES.register("perturbations")
class Perturbations(Measure):
    name = "perturbations"
    defaults = {"attack": None, "n_images": 4}

    def evaluate(self, loader, seed: int = 0, progress=None) -> dict[str, Any]:
        from ..data.loader import epoch_generator

        if self.n_images < 1:
            raise SpecError(f"measure 'perturbations': n_images must be ≥ 1, got {self.n_images}")
        cfg = dict(self.attack or DEFAULT_ATTACK)
        attack = build_attack(cfg, self.model)
        g = epoch_generator(loader.device, seed, 0, stream=1)
        xs, ys = [], []
        for x, y in loader.batches():
            xs.append(x), ys.append(y)
            if sum(len(b) for b in ys) >= self.n_images:
                break
        x, y = torch.cat(xs)[:self.n_images], torch.cat(ys)[:self.n_images]
        x_adv = attack(x, y, g)
        with model_mode(self.model, False), torch.no_grad():
            pred, pred_adv = self.model(x).argmax(1), self.model(x_adv).argmax(1)
        eps = attack.params()["eps"]
        images = [{"label": int(y[i]), "pred": int(pred[i]), "pred_adv": int(pred_adv[i]), "x": png(x[i]),
                   "x_adv": png(x_adv[i]), "delta": png((x_adv[i] - x[i] + eps) / (2 * eps))} for i in range(len(y))]
        if progress is not None:
            progress.update(len(loader))
        n = len(y)
        return {"n": n, "clean": 100.0 * (pred == y).sum().item() / n,
                "robust": 100.0 * ((pred == y) & (pred_adv == y)).sum().item() / n, "eps": eps, "images": images,
                "attack": {"name": cfg["name"], **attack.params()}}
