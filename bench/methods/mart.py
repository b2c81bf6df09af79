"""MART (Wang et al., ICLR 2020): misclassification-aware adversarial training.

Objective: BCE(f(x'), y) + β·(1/B)·Σ_i KL(p(x_i) ‖ p(x'_i))·(1 − p_y(x_i)), where
BCE(p', y) = −log p'_y − log(1 − max_{k≠y} p'_k), x' from PGD on the cross-entropy.
Parameters (defaults): beta (6.0).
Conventions of the official code (YisenWang/MART): attack in eval mode, start
x + 0.001·N(0, I) without clamping; the numerical guards log(p' + 1e-12),
log(1.0001 − p'_k + 1e-12) and weight (1.0000001 − p_y); the "strongest wrong
class" is the top class of p' other than y. Inputs in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import METHODS
from .base import Method, accuracy


def mart_loss(logits: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    p_adv = F.softmax(logits_adv, 1)
    top2 = p_adv.topk(2, dim=1).indices
    wrong = torch.where(top2[:, 0] == y, top2[:, 1], top2[:, 0])
    bce = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - p_adv + 1e-12), wrong)
    p_nat = F.softmax(logits, 1)
    p_true = p_nat.gather(1, y[:, None]).squeeze(1)
    kl = F.kl_div(torch.log(p_adv + 1e-12), p_nat, reduction="none").sum(1)
    return bce + beta * (kl * (1.0000001 - p_true)).mean()


@METHODS.register("mart")
class MART(Method):
    name = "mart"
    defaults = {"beta": 6.0}
    train_passes = 6.0   # x and x' forward and backward
    attack_defaults = {"loss": "ce", "random_start": "normal", "clamp_start": False, "bn_mode": "eval"}

    def loss(self, x, y, generator=None):
        x_adv = self.attack(x, y, generator)
        logits = self.logits(x)
        logits_adv = self.logits(x_adv)
        loss = mart_loss(logits, logits_adv, y, self.beta)
        return loss, {"loss": loss.detach(), "clean_acc": accuracy(logits, y),
                      "adv_acc": accuracy(logits_adv, y)}
