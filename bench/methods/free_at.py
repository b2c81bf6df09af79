"""FreeAT: adversarial training "for free" (Shafahi et al., NeurIPS 2019); with HE's head
FreeAT+HE / m-HE (Pang et al., NeurIPS 2020, Tables 3, 4, 5, 12; Fig. 2 right).

Each batch is replayed ``replays`` (m) times; one perturbation δ persists across replays
and batches (a buffer of the first batch's size; a smaller last batch uses its first rows).
Every replay is one forward and one backward on x + δ (clamped to [0, 1], as AT_HE's
ImageNet code clamps its input) with the model in train mode, and that one gradient serves
both: the optimiser step on the weights and δ ← clip_ε(δ + step·sign(∇_δ L)). So the method
owns its update: m optimiser steps per batch (``updates_per_batch``), and δ is kept in
state.pt for an exact resume. An "epoch" of the training loop is one pass over the data
(m replays per batch), as in both FreeAT codes: a paper's E epochs of FreeAT are ⌈E/m⌉
passes (AT_HE's ImageNet code: 90 epochs, m = 4 → 23 passes), which the recipe states.
Objective: CE(f(x + δ), y); with HE's head (s, m; bench/models/base.py)
CE(s·(cos θ − m·1_y), y), which also drives δ (AT_HE's ImageNet ``main_free.py``).
Parameters (defaults): replays (8; the ImageNet recipe 4), eps ("8/255"), step (None: ε,
FreeAT's rule; AT_HE's ImageNet configs set both to 4/255). FreeAT has no training attack:
its perturbation is the training gradient's by-product, so ε is the method's parameter.
Inputs in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import METHODS
from ..errors import SpecError
from ..numbers import parse_number
from .base import Method, accuracy


@METHODS.register("free_at")
class FreeAT(Method):
    name = "free_at"
    defaults = {"replays": 8, "eps": 8 / 255, "step": None}
    formulas = {
        "plain": {"train": "CE(f(x + δ), y), m replays", "adversarial": "δ ← clip_ε(δ + ε·sign(∇_δ CE))",
                  "train_here": "CE(f(x + δ), y), m replays per batch, δ kept across batches",
                  "adversarial_here": "δ ← clip_ε(δ + step·sign(∇_δ CE)), the same backward"},
        "he": {"train": "CEᵐ(f̃(x + δ), y) (as PGD-AT+HE)", "adversarial": "δ ← clip_ε(δ + ε·sign(∇_δ CEᵐ))",
               "train_here": "CE({s}·(cos θ − {m}·1_y), y) on x + δ, m replays per batch",
               "adversarial_here": "δ ← clip_ε(δ + step·sign(∇_δ CE({s}·(cos θ − {m}·1_y), y)))"},
    }

    def __init__(self, model, attack=None, helpers=None, **params):
        super().__init__(model, attack, helpers, **params)
        self.eps = parse_number(self.eps)
        self.step = self.eps if self.step is None else parse_number(self.step)
        self.delta: torch.Tensor | None = None

    @classmethod
    def validate(cls, params):
        if params["replays"] < 1 or parse_number(params["eps"]) < 0 or (
                params["step"] is not None and parse_number(params["step"]) < 0):
            raise SpecError(f"method 'free_at': replays ≥ 1, eps and step ≥ 0; got {params}")

    @property
    def updates_per_batch(self) -> int:
        return self.replays

    def train_step(self, x, y, generator, update):
        if self.delta is None:
            self.delta = torch.zeros_like(x)
        loss_sum = acc_sum = 0.0
        for _ in range(self.replays):
            delta = self.delta[:len(x)].clone().requires_grad_(True)
            with self.autocast():
                logits = self.logits((x + delta).clamp(0, 1))
                loss = F.cross_entropy(self.he.margin_logits(logits, y), y)
            update(loss, x, y)    # one backward: the weights' step and ∇_δ
            with torch.no_grad():
                self.delta[:len(x)] = (delta + self.step * delta.grad.sign()).clamp(-self.eps, self.eps)
            loss_sum = loss_sum + loss.detach()
            acc_sum = acc_sum + accuracy(logits, y)
        return {"loss": loss_sum / self.replays, "adv_acc": acc_sum / self.replays}

    def state_dict(self):
        return {"delta": self.delta if self.delta is not None else torch.zeros(0)}

    def load_state_dict(self, state):
        delta = state.get("delta")
        self.delta = delta.clone() if delta is not None and delta.numel() else None
