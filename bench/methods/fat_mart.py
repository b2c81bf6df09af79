"""FAT for MART (Zhang et al., ICML 2020, App. E.2: Eq. 11, Algorithm 5).

Objective (Eq. 11): BCE(f(x̃), y) + β·(1/B)·Σ_i KL(p(x_i) ‖ p(x̃_i))·(1 − p_y(x_i)), with
BCE(p̃, y) = −log p̃_y − log(1 − max_{k≠y} p̃_k) and x̃ from PGD-K-τ on the cross-entropy
(Algorithm 1; ``bench/attacks/pgd_es.py``). The loss is MART's (``bench/methods/mart.py``:
``mart_loss`` with its numerical guards, identical to FAT_for_MART.py:48-61). τ is a
parameter of the training attack, constant or scheduled per epoch.
Parameters (defaults): beta (6.0; l.709).
Conventions of the official code (FAT_for_MART.py, earlystop.py): attack in eval mode, CE
inner loss, start x + 0.001·N(0, I) clamped to [0, 1]; the train-mode forwards run x̃ first,
then x (FAT_for_MART.py:79-80; the order only moves BatchNorm's running statistics).
With τ ≥ K this is MART as the suite's ``mart`` computes it with the same start
(clamp_start true). Statistics: loss, clean_acc, adv_acc, bp (mean PGD steps per example).
Inputs in [0, 1].
"""
from __future__ import annotations

from . import METHODS
from .base import Method, accuracy
from .mart import mart_loss


@METHODS.register("fat_mart")
class FATMART(Method):
    name = "fat_mart"
    defaults = {"beta": 6.0}
    attack_name = "pgd_es"
    attack_defaults = {"loss": "ce", "random_start": "normal", "clamp_start": True, "bn_mode": "eval"}

    def loss(self, x, y, generator=None):
        x_adv, steps = self.attack.search(x, y, generator)
        logits_adv = self.logits(x_adv)
        logits = self.logits(x)
        loss = mart_loss(logits, logits_adv, y, self.beta)
        return loss, {"loss": loss.detach(), "clean_acc": accuracy(logits, y),
                      "adv_acc": accuracy(logits_adv, y), "bp": steps.float().mean()}
