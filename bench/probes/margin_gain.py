"""Expected margin increase and actual margin during training (BAT Fig. 6).

Paper: Kim et al., "Bridged Adversarial Training" (2021), Sec. 5.2 and Fig. 6: "the
expected margin increase −∇θM(x)·∇θℓ of each method" (a weight update −η∇θℓ changes M
by ≈ −η∇θM·∇θℓ) and "the actual margin M(x)" during the first 40 epochs.
Here: after the last batch of every epoch (up to ``epochs``), on that training batch,
θ = every trainable parameter, ℓ = the method's whole objective (the loss it minimises),
M(x) = p_y − max_{i≠y} p_i averaged over the clean batch, forwarded in training mode as
the method's own clean forward (BatchNorm statistics restored, random generators
untouched). Parameters (defaults): epochs (40). Records: epoch, expected_gain
(−∇M·∇ℓ), cosine (between −∇ℓ and ∇M), margin. Inputs in [0, 1].
"""
from __future__ import annotations

from typing import Any

import torch

from . import PROBES
from .base import Probe, flat_grad, margin_grad, mean_of, parameters


@PROBES.register("margin_gain")
class MarginGain(Probe):
    name = "margin_gain"
    defaults = {"epochs": 40}

    def __init__(self, model, **params):
        super().__init__(model, **params)
        self._pending: dict[str, torch.Tensor] | None = None

    def after_loss(self, step, x, y, terms, loss):
        if not step.last_of_epoch or step.epoch >= self.epochs:
            return
        params = parameters(self.model)
        g_m, m = margin_grad(self.model, x, y, params)
        g_l = flat_grad(loss, params)
        self._pending = {"expected_gain": -torch.dot(g_m, g_l),
                         "cosine": -torch.dot(g_m, g_l) / (g_m.norm() * g_l.norm()).clamp_min(1e-30),
                         "margin": m}

    def end_epoch(self, epoch):
        if self._pending is None:
            return []
        rec: dict[str, Any] = {"epoch": epoch + 1, **{k: float(v) for k, v in self._pending.items()}}
        self._pending = None
        return [rec]

    @staticmethod
    def summary(records, **_):
        return {"epochs": len(records), "expected_gain": mean_of(records, "expected_gain"),
                "margin": mean_of(records, "margin"),
                "final_margin": records[-1]["margin"] if records else None}
