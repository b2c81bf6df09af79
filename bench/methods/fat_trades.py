"""FAT for TRADES (Zhang et al., ICML 2020, App. D.2: Eq. 9, Algorithms 3 and 4).

Objective (Eq. 9): CE(f(x), y) + β·(1/B)·Σ KL(f(x) ‖ f(x̃)), x̃ from PGD-K-τ on the KL
inner loss (Algorithm 3; ``bench/attacks/pgd_es.py`` with loss kl). Algorithm 4 writes the
CE term on x̃; Eq. 9 and the code (FAT_for_TRADES.py) put it on x, as here (see the spec's
choices). τ is a parameter of the training attack, constant or scheduled per epoch.
Parameters (defaults): beta (6.0, the code's default).
Conventions of the official code: attack in eval mode, start x + 0.001·N(0, I) clamped to
[0, 1] (earlystop.py), KL summed in the attack and divided by the batch size in the
objective, the KL target softmax(f(x)) not detached, two train-mode forwards (x, then x̃).
With τ ≥ K this is TRADES as the suite's ``trades`` computes it with the same start
(clamp_start true) and repeat_clean_forward false. Statistics: loss, clean_acc, adv_acc,
bp (mean PGD steps per example, Sec. 5.2). Inputs in [0, 1].
"""
from __future__ import annotations

import torch.nn.functional as F

from . import METHODS
from .base import Method, accuracy, kl_batchmean, total


@METHODS.register("fat_trades")
class FATTRADES(Method):
    name = "fat_trades"
    defaults = {"beta": 6.0}
    attack_name = "pgd_es"
    attack_defaults = {"loss": "kl", "random_start": "normal", "clamp_start": True, "bn_mode": "eval"}

    def objective(self, x, y, generator=None):
        x_adv, steps = self.attack.search(x, y, generator)
        logits = self.logits(x)
        logits_adv = self.logits(x_adv)
        terms = {"natural": F.cross_entropy(logits, y), "robust": self.beta * kl_batchmean(logits_adv, logits)}
        return terms, {"loss": total(terms).detach(), "clean_acc": accuracy(logits, y),
                       "adv_acc": accuracy(logits_adv, y), "bp": steps.float().mean()}
