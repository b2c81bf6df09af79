"""FAT: friendly adversarial training (Zhang et al., ICML 2020, Algorithm 2).

Objective: CE(f(x̃), y) (batch mean), x̃ the friendly adversarial examples of PGD-K-τ
(``bench/attacks/pgd_es.py``, Algorithm 1) on the cross-entropy. τ is a parameter of the
training attack (``attack: {tau: …}``), constant or scheduled per epoch by the recipe
(``epoch_schedules: {attack.tau: {milestones, values}}``: Tables 1–4 raise it during training).
Parameters: none. Training attack conventions of the official code (FAT.py, earlystop.py):
uniform start U(−ε, ε) clamped to [0, 1], CE inner loss, model in eval mode during the
search, no per-step noise (the paper's update; the code's ω = 0.001 is ``omega``).
With τ ≥ K this is PGD-K adversarial training (``pgd_at``, same start). Statistics: loss,
adv_acc and bp, the mean number of PGD steps the batch's examples took (Sec. 5.2; the
training loop averages it over the training set per epoch, the code's ``bp_count_avg``).
Inputs in [0, 1].
"""
from __future__ import annotations

import torch.nn.functional as F

from . import METHODS
from .base import Method, accuracy


@METHODS.register("fat")
class FAT(Method):
    name = "fat"
    attack_name = "pgd_es"
    attack_defaults = {"loss": "ce", "random_start": "uniform", "clamp_start": True, "bn_mode": "eval"}

    def loss(self, x, y, generator=None):
        x_adv, steps = self.attack.search(x, y, generator)
        logits_adv = self.logits(x_adv)
        loss = F.cross_entropy(logits_adv, y)
        return loss, {"loss": loss.detach(), "adv_acc": accuracy(logits_adv, y), "bp": steps.float().mean()}
