"""BAT: bridged adversarial training (Kim, Lee, Lee & Lee, 2021), Algorithm 1.

Objective: CE(f(x), y) + β·Σ_{k=1..m} (1/B)·Σ_i KL(p(x_k−1) ‖ p(x_k)), with the bridge
points x_k = x + (k/m)·δ on the straight line from x_0 = x to x_m = x*, δ = x* − x
(detached), x* from PGD on the cross-entropy. With m = 1 this is TRADES' objective on
the same x* (TRADES with a CE inner maximisation).
Parameters (defaults): beta (5.0, the paper's β for TRADES and BAT), m (2, "unless
otherwise specified, we use m = 2"), clean_first (True).
Conventions of the author's implementation (Harry24k/adversarial-defenses-pytorch,
``torchdefenses/trainer/empirical_defenses/bat.py``): x* from ``torchattacks.PGD``:
cross-entropy, uniform start in the ε-ball clamped to [0, 1], sign steps with
projection and clamp, model in eval mode during the attack; KL with
``reduction='batchmean'`` and gradients through both sides (no detach); one
train-mode forward per bridge point. The author's code forwards the clean batch (train
mode) before building x*, so with BatchNorm the attack sees running statistics that
already include the current batch: ``clean_first=True`` keeps that order;
``clean_first=False`` builds x* first, as TRADES, MART and HAT do here (same objective,
BN running statistics one update earlier in the attack). The last bridge point is x*
itself (the author's x + 1·δ, equal up to rounding). Inputs in [0, 1]; bridge points
are convex combinations of x and x*, so they stay in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import SpecError
from . import METHODS
from .base import Method, accuracy, kl_batchmean, total


def bridge_points(x: torch.Tensor, x_adv: torch.Tensor, m: int) -> list[torch.Tensor]:
    """x_1, …, x_m on the segment from x to x*: x + (k/m)·δ with δ = x* − x detached; x_m = x*."""
    delta = (x_adv - x).detach()
    return [x + delta * (k / m) for k in range(1, m)] + [x_adv.detach()]


def bridged_kl(logits: list[torch.Tensor]) -> torch.Tensor:
    """Σ_k (1/B)·Σ_i KL(p(x_k−1) ‖ p(x_k)) over consecutive logits [f(x_0), …, f(x_m)]."""
    return sum(kl_batchmean(nxt, prev) for prev, nxt in zip(logits[:-1], logits[1:]))


@METHODS.register("bat")
class BAT(Method):
    name = "bat"
    defaults = {"beta": 5.0, "m": 2, "clean_first": True}
    train_passes = 9.0   # x and the m = 2 bridge points forward and backward
    attack_defaults = {"loss": "ce", "random_start": "uniform", "clamp_start": True, "bn_mode": "eval"}

    @classmethod
    def validate(cls, params):
        if params["m"] < 1:
            raise SpecError(f"bat: m (the number of bridges) must be a positive integer, got {params['m']!r}")

    def objective(self, x, y, generator=None):
        if self.clean_first:
            logits = self.logits(x)
            x_adv = self.attack(x, y, generator)
        else:
            x_adv = self.attack(x, y, generator)
            logits = self.logits(x)
        chain = [logits] + [self.logits(xk) for xk in bridge_points(x, x_adv, self.m)]
        natural = F.cross_entropy(logits, y)
        robust = bridged_kl(chain)
        terms = {"natural": natural, "robust": self.beta * robust}   # loss = natural + β·robust
        return terms, {"loss": total(terms).detach(), "clean_acc": accuracy(logits, y),
                       "adv_acc": accuracy(chain[-1], y), "kl": robust.detach()}
