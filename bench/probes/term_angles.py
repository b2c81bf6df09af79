"""Angles between each loss term's descent direction and the margin gradient (BAT Fig. 4).

Paper: Kim et al., "Bridged Adversarial Training" (2021), Sec. 3.3 and Fig. 4: "the
direction of each vector is denoted as the angle to the gradient of increasing the margin
at the end of each epoch"; the arrows come from the cosine similarity between each term's
gradient descent direction −∇θℓ_k and ∇θM(x), M(x) = p_y − max_{i≠y} p_i (Eq. 4).
Here: after the last batch of every epoch, on that training batch, with θ = every
trainable parameter, ℓ_k the method's named objective terms (TRADES: natural = CE(f(x), y),
robust = β·KL(p(x) ‖ p(x*)); the angle does not depend on β) and M averaged over the
clean batch, forwarded in training mode as the method's own clean forward (BatchNorm
statistics restored, random generators untouched). Angle in degrees in [0, 180]:
< 90 the term's update increases the margin, > 90 it decreases it.
Parameters (defaults): from_epoch (3: the summary's late phase, "except for first two
epochs"; an epoch of the paper's budget, rescaled with a scale's shorter training). Records: epoch, angle_<term>, cos_<term>, margin. Inputs in [0, 1].
"""
from __future__ import annotations

import math
from typing import Any

import torch

from . import PROBES
from .base import Probe, angle_deg, flat_grad, margin_grad, mean_of, parameters


@PROBES.register("term_angles")
class TermAngles(Probe):
    name = "term_angles"
    defaults = {"from_epoch": 3}

    def __init__(self, model, **params):
        super().__init__(model, **params)
        self._pending: dict[str, torch.Tensor] | None = None

    def after_loss(self, step, x, y, terms, loss):
        if not step.last_of_epoch:
            return
        params = parameters(self.model)
        g_m, m = margin_grad(self.model, x, y, params)
        out = {"margin": m}
        for name, term in terms.items():
            descent = -flat_grad(term, params)
            out[f"angle_{name}"] = angle_deg(descent, g_m)
            out[f"cos_{name}"] = torch.cos(torch.deg2rad(out[f"angle_{name}"]))
        self._pending = out

    def end_epoch(self, epoch):
        if self._pending is None:
            return []
        rec: dict[str, Any] = {"epoch": epoch + 1, **{k: float(v) for k, v in self._pending.items()}}
        self._pending = None
        return [rec]

    @staticmethod
    def summary(records, from_epoch=3, run_epochs=None, paper_epochs=None, **_):
        """Mean angles over all epochs and over the late phase: from ``from_epoch`` of the
        paper's budget, rescaled to the run's (ceil, as the scale shortens training)."""
        if run_epochs and paper_epochs and run_epochs != paper_epochs:
            from_epoch = max(1, math.ceil(from_epoch * run_epochs / paper_epochs))
        terms = sorted({k[len("angle_"):] for r in records for k in r if k.startswith("angle_")})
        out: dict[str, Any] = {"epochs": len(records), "late_from_epoch": from_epoch}
        for t in terms:
            out[f"angle_{t}"] = mean_of(records, f"angle_{t}")
            out[f"angle_{t}_late"] = mean_of(records, f"angle_{t}", first=from_epoch)
            late = [r[f"angle_{t}"] for r in records if r["epoch"] >= from_epoch]
            out[f"above90_{t}_late"] = 100.0 * sum(a > 90 for a in late) / len(late) if late else None
        return out
