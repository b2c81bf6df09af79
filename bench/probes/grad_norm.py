"""Normalised gradient norm per batch at the start of training (BAT Fig. 7, Eq. 6).

Paper: Kim et al., "Bridged Adversarial Training" (2021), Sec. 5.2, Eq. 6 and Fig. 7:
‖∇θℓ̂(x, y)‖₂ = ‖∇θℓ(x, y)‖₂ / ‖ℓ(x, y)‖₂ "during the first 2000 batches", to compare
methods whose losses have different scales.
Here: ℓ is the scalar the method minimises on the batch (its whole objective), so
‖ℓ‖₂ = |ℓ|; ∇θℓ is the gradient the optimiser is about to apply (``p.grad`` after
``backward``, before weight decay and momentum), θ = every trainable parameter. The
norms stay on the device per batch and are read once per epoch. Parameters (defaults):
batches (2000). Records: epoch, batch (1-indexed from the start of training),
grad_norm, loss, normalized. Inputs in [0, 1].
"""
from __future__ import annotations


import torch

from . import PROBES
from .base import Probe, mean_of, parameters


@PROBES.register("grad_norm")
class GradNorm(Probe):
    name = "grad_norm"
    defaults = {"batches": 2000}

    def __init__(self, model, **params):
        super().__init__(model, **params)
        self._rows: list[tuple[int, torch.Tensor]] = []

    def after_backward(self, step, loss):
        if step.index >= self.batches:
            return
        grads = [p.grad.detach() for p in parameters(self.model) if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads, 2.0).float()     # fused per-device kernels, no sync
        self._rows.append((step.index + 1, torch.stack([norm, loss.detach().float().abs()])))

    def end_epoch(self, epoch):
        if not self._rows:
            return []
        values = torch.stack([v for _, v in self._rows]).tolist()   # one read per epoch
        out = [{"epoch": epoch + 1, "batch": b, "grad_norm": g, "loss": l,
                "normalized": g / l if l > 0 else float("inf")} for (b, _), (g, l) in zip(self._rows, values)]
        self._rows = []
        return out

    @staticmethod
    def summary(records, **_):
        return {"batches": len(records), "normalized": mean_of(records, "normalized"),
                "grad_norm": mean_of(records, "grad_norm")}
