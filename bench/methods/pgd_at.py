"""PGD adversarial training, "AT" (Madry et al., ICLR 2018).

Objective: CE(f(x'), y) with x' from PGD on the cross-entropy.
Parameters: none. Training attack conventions (HAT's code for AT): CE inner loss,
uniform random start, model in eval mode during the attack. Inputs in [0, 1].
"""
from __future__ import annotations

import torch.nn.functional as F

from . import METHODS
from .base import Method, accuracy


@METHODS.register("pgd_at")
class PGDAT(Method):
    name = "pgd_at"
    attack_defaults = {"loss": "ce", "random_start": "uniform", "bn_mode": "eval"}

    def loss(self, x, y, generator=None):
        x_adv = self.attack(x, y, generator)
        logits_adv = self.logits(x_adv)
        loss = F.cross_entropy(logits_adv, y)
        return loss, {"loss": loss.detach(), "adv_acc": accuracy(logits_adv, y)}
