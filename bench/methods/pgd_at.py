"""PGD adversarial training, "AT" (Madry et al., ICLR 2018); with HE's head, PGD-AT+HE
(Pang et al., NeurIPS 2020, Table 1).

Objective: CE(f(x'), y) with x' from PGD on the cross-entropy; with HE's head (its s and
m, bench/models/base.py) L^m_CE(f̃(x'), y) = CE(s·(cos θ' − m·1_y), y) (Eq. 6), the
training attack on CE(s·cos θ', y) (AT_HE's code; Table 1 writes CE(f̃(x'), y)).
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
    formulas = {
        "plain": {"train": "CE(f(x*), y)", "adversarial": "CE(f(x′), y)",
                  "train_here": "CE(f(x*), y)", "adversarial_here": "CE(f(x′), y)"},
        "he": {"train": "CEᵐ(f̃(x*), y)", "adversarial": "CE(f̃(x′), y)",
               "train_here": "CE({s}·(cos θ* − {m}·1_y), y)",
               "adversarial_here": "CE({s}·cos θ′, y) (s inside the attack, as AT_HE's code)"},
    }

    def loss(self, x, y, generator=None):
        x_adv = self.attack(x, y, generator)
        logits_adv = self.logits(x_adv)
        loss = F.cross_entropy(self.he.margin_logits(logits_adv, y), y)
        return loss, {"loss": loss.detach(), "adv_acc": accuracy(logits_adv, y)}
