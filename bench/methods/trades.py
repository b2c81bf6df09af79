"""TRADES (Zhang et al., ICML 2019); with HE's head, TRADES+HE (Pang et al., NeurIPS 2020,
Table 1).

Objective: CE(f(x), y) + β·(1/B)·Σ KL(f(x) ‖ f(x')), x' from PGD on KL(f(x) ‖ f(x')).
With HE's head (s, m; bench/models/base.py): CE(s·(cos θ − m·1_y), y) + β·(1/B)·Σ
KL(softmax(s·cos θ) ‖ softmax(s·cos θ')), the attack on the s-scaled KL, as AT_HE's
``losses.py`` computes it (Table 1 writes both KL terms without s: ``scale_kl: false``).
Parameters (defaults): beta (6.0), repeat_clean_forward (True), scale_kl (True: the HE
head's s inside the KL term; no effect without the head).
Conventions of the official code (yaodongyu/TRADES, copied by HAT's repo): attack in
eval mode, start x + 0.001·N(0, I) without clamping, KL summed in the attack and
divided by the batch size in the objective, the KL target softmax(f(x)) not
detached. The official code forwards the clean batch a second time, after the
adversarial batch; in train mode that pass returns the same logits and only moves
the BatchNorm running statistics, so ``repeat_clean_forward`` runs it without
gradients (same gradients, same running statistics, less work). Inputs in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import METHODS
from .base import Method, accuracy, kl_batchmean, total


@METHODS.register("trades")
class TRADES(Method):
    name = "trades"
    defaults = {"beta": 6.0, "repeat_clean_forward": True, "scale_kl": True}
    train_passes = 8.0   # x and x' forward and backward, the repeated clean forward, the attack's clean target
    attack_defaults = {"loss": "kl", "random_start": "normal", "clamp_start": False, "bn_mode": "eval"}
    formulas = {
        "plain": {"train": "CE(f(x), y) + λ·CE(f(x*), f(x))", "adversarial": "CE(f(x′), f(x))",
                  "train_here": "CE(f(x), y) + β·KL(f(x) ‖ f(x*)), β = 1/λ",
                  "adversarial_here": "KL(f(x) ‖ f(x′))"},
        "he": {"train": "CEᵐ(f̃(x), y) + λ·CE(f̃(x*), f̃(x))", "adversarial": "CE(f̃(x′), f̃(x))",
               "train_here": "CE({s}·(cos θ − {m}·1_y), y) + β·KL(S({s}·cos θ) ‖ S({s}·cos θ*)) (AT_HE's code)",
               "adversarial_here": "KL(S({s}·cos θ) ‖ S({s}·cos θ′)) (s inside, as AT_HE's code)"},
    }

    def objective(self, x, y, generator=None):
        x_adv = self.attack(x, y, generator)
        logits = self.logits(x)
        logits_adv = self.logits(x_adv)
        if self.repeat_clean_forward:
            with torch.no_grad():
                self.model(x)
        natural = F.cross_entropy(self.he.margin_logits(logits, y), y)
        scale = self.he.scaled if self.scale_kl else (lambda z: z)
        robust = kl_batchmean(scale(logits_adv), scale(logits))
        terms = {"natural": natural, "robust": self.beta * robust}   # loss = natural + β·robust
        return terms, {"loss": total(terms).detach(), "clean_acc": accuracy(logits, y),
                       "adv_acc": accuracy(logits_adv, y)}
