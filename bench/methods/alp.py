"""ALP: adversarial logit pairing (Kannan, Kurakin & Goodfellow, 2018) with untargeted PGD
("We substitute the adversarial attacks in ALP with untargeted PGD as suggested [20]"), and
with HE's head ALP+HE, as HE writes them (Pang et al., NeurIPS 2020, Table 1, Sec. 4).

Objective: α·CE(f(x), y) + (1 − α)·CE(f(x*), y) + λ·pair(Wᵀz, Wᵀz*), x* from PGD on
CE(f(x′), y). With HE's head (s, m; bench/models/base.py) the CE terms are
L^m_CE = CE(s·(cos θ − m·1_y), y) and the pairing compares the unscaled cosines W̃ᵀz̃, W̃ᵀz̃*
(Table 1 and AT_HE's ``losses.py`` agree on that); the training attack sees s·cos θ′
(AT_HE's code).
Parameters (defaults): alpha (0.5), lam (0.5: "the adversarial logit pairing weight as
0.5"), pairing ("mse": AT_HE's ``F.mse_loss`` of the logits, the squared difference
averaged over batch × classes, which is also ALP's own squared-ℓ2 loss | "l2": Table 1's
‖Wᵀ(z − z*)‖₂ per example, averaged over the batch).
Training attack conventions (AT_HE's code, as its PGD-AT): CE inner loss, start
x + 0.001·N(0, I) without clamping, model in eval mode. The clean and adversarial batches
are forwarded separately in train mode. Inputs in [0, 1].
"""
from __future__ import annotations

import torch.nn.functional as F

from . import METHODS
from .base import Method, accuracy, total


@METHODS.register("alp")
class ALP(Method):
    name = "alp"
    defaults = {"alpha": 0.5, "lam": 0.5, "pairing": "mse"}
    choices = {"pairing": ("mse", "l2")}
    attack_defaults = {"loss": "ce", "random_start": "normal", "clamp_start": False, "bn_mode": "eval"}
    formulas = {
        "plain": {"train": "α·CE(f(x), y) + (1 − α)·CE(f(x*), y) + λ·‖Wᵀ(z − z*)‖₂", "adversarial": "CE(f(x′), y)",
                  "train_here": "α·CE(f(x), y) + (1 − α)·CE(f(x*), y) + λ·MSE(Wᵀz, Wᵀz*) (AT_HE's code)",
                  "adversarial_here": "CE(f(x′), y)"},
        "he": {"train": "α·CEᵐ(f̃(x), y) + (1 − α)·CEᵐ(f̃(x*), y) + λ·‖W̃ᵀ(z̃ − z̃*)‖₂",
               "adversarial": "CE(f̃(x′), y)",
               "train_here": "α·CE({s}·(cos θ − {m}·1_y), y) + (1 − α)·CE({s}·(cos θ* − {m}·1_y), y) "
                             "+ λ·MSE(cos θ, cos θ*) (AT_HE's code)",
               "adversarial_here": "CE({s}·cos θ′, y) (s inside the attack, as AT_HE's code)"},
    }

    @classmethod
    def validate(cls, params):
        from ..errors import SpecError

        if not 0 <= float(params["alpha"]) <= 1 or float(params["lam"]) < 0:
            raise SpecError(f"method 'alp': alpha must be in [0, 1] and lam ≥ 0, got {params}")

    def objective(self, x, y, generator=None):
        x_adv = self.attack(x, y, generator)
        logits, logits_adv = self.logits(x), self.logits(x_adv)
        if self.pairing == "mse":
            pair = F.mse_loss(logits, logits_adv)
        else:
            pair = (logits - logits_adv).norm(dim=1).mean()
        terms = {"natural": self.alpha * F.cross_entropy(self.he.margin_logits(logits, y), y),
                 "robust": (1 - self.alpha) * F.cross_entropy(self.he.margin_logits(logits_adv, y), y),
                 "pairing": self.lam * pair}
        return terms, {"loss": total(terms).detach(), "clean_acc": accuracy(logits, y),
                       "adv_acc": accuracy(logits_adv, y)}
