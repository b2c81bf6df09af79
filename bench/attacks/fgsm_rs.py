"""FGSM with a random start, the training attack of FastAT (Wong, Rice & Kolter, "Fast is
better than free: Revisiting adversarial training", ICLR 2020; HE Table 3).

Threat model ℓ∞, inputs in [0, 1]: δ₀ ~ U(−ε, ε) (x + δ₀ clamped to [0, 1]), one step
x′ = clip_{x,ε}(x + δ₀ + α·sign(∇ₓL(x + δ₀))), clamped to [0, 1]
(``fast_adversarial/CIFAR10/train_fgsm.py``; its per-channel upper bound of the start,
which uses channel 0's ε for every channel, does not arise here: inputs are not
normalised outside the model).
Arguments (defaults): eps ("8/255"), alpha ("10/255": the step, FastAT's 1.25·ε),
logit_scale (1), margin (0) as in pgd, bn_mode ("eval"; FastAT's code attacks in train
mode, which its method sets). It has no ``steps`` or ``step_size``: a scale's training-attack
overrides for multi-step attacks do not change it.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import ATTACKS
from .base import Attack, check_budget, number
from .pgd import PGD


@ATTACKS.register("fgsm_rs")
@dataclass(repr=False)
class FGSMRS(Attack):
    eps: float | str = "8/255"
    alpha: float | str = "10/255"
    logit_scale: float | str = 1.0
    margin: float | str = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.eps, self.alpha = number(self.eps), number(self.alpha)
        check_budget(self.eps, self.alpha, True, (0.0, 1.0))
        self._pgd = PGD(self.model, eps=self.eps, step_size=self.alpha, steps=1, random_start="uniform",
                        clamp_start=True, logit_scale=self.logit_scale, margin=self.margin, bn_mode=self.bn_mode)

    def perturb(self, x, y, generator=None):
        return self._pgd.perturb(x, y, generator)
