"""HAT: helper-based adversarial training (Rade & Moosavi-Dezfooli, 2021), Algorithm 1.

Objective: CE(f(x), y) + β·(1/B)·Σ KL(f(x) ‖ f(x')) + γ·CE(f(x̃), ỹ), with the helper
example x̃ = x + h·(x' − x) and helper label ỹ = argmax f_std(x') from a standard
model trained on the same data.
Parameters (defaults): beta (2.5), gamma (0.5), h (2.0), robust_loss ("kl" | "ce").
Helper models: ``helper`` (the standard run, best-clean checkpoint).
Conventions of the official code (imrahulr/hat): attack in eval mode from
x + 0.001·N(0, I) on KL to the clean prediction; x̃ is not clamped to [0, 1]; ỹ
uses x', not x̃, with the standard model in eval mode and no gradients; the KL
target is not detached; three train-mode forwards (x, x', x̃).
``robust_loss="ce"`` is the variant of Table 3's footnote used for Tiny-ImageNet-200:
PGD on the cross-entropy from a uniform start, and β·CE(f(x'), y) as the robust term.
Inputs in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import METHODS
from .base import Method, accuracy, kl_batchmean

CE_ATTACK = {"loss": "ce", "random_start": "uniform", "clamp_start": True}


@METHODS.register("hat")
class HAT(Method):
    name = "hat"
    defaults = {"beta": 2.5, "gamma": 0.5, "h": 2.0, "robust_loss": "kl"}
    train_passes = 11.0   # x, x', x̃ forward and backward, the helper's forward, the attack's clean target
    choices = {"robust_loss": ("kl", "ce")}
    attack_defaults = {"loss": "kl", "random_start": "normal", "clamp_start": False, "bn_mode": "eval"}
    helpers_required = ("helper",)

    def __init__(self, model, attack=None, helpers=None, **params):
        if params.get("robust_loss") == "ce":
            attack = {**CE_ATTACK, **(attack or {})}
        super().__init__(model, attack, helpers, **params)
        self.helper = self.helpers["helper"].eval()
        for p in self.helper.parameters():
            p.requires_grad_(False)

    def loss(self, x, y, generator=None):
        x_adv = self.attack(x, y, generator)
        x_help = x + self.h * (x_adv - x)
        with torch.no_grad():
            y_help = self.helper(x_adv).argmax(1)
        logits, logits_adv, logits_help = self.logits(x), self.logits(x_adv), self.logits(x_help)
        natural = F.cross_entropy(logits, y)
        if self.robust_loss == "kl":
            robust = kl_batchmean(logits_adv, logits)
        else:
            robust = F.cross_entropy(logits_adv, y)
        helper = F.cross_entropy(logits_help, y_help)
        loss = natural + self.beta * robust + self.gamma * helper
        return loss, {"loss": loss.detach(), "clean_acc": accuracy(logits, y),
                      "adv_acc": accuracy(logits_adv, y), "helper_acc": accuracy(logits_help, y_help)}
