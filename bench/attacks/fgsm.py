"""FGSM: the fast gradient sign method (Goodfellow et al., ICLR 2015).

Threat model ℓ∞, inputs in [0, 1]: one step of size ε on the sign of the loss
gradient at x (no random start), clamped to [0, 1].
Arguments (defaults): eps ("8/255"), loss ("ce"), bn_mode ("eval").
"""
from __future__ import annotations

from dataclasses import dataclass

from . import ATTACKS
from .pgd import PGD, Start


@ATTACKS.register("fgsm")
@dataclass(repr=False)
class FGSM(PGD):
    def __post_init__(self) -> None:
        self.steps, self.restarts, self.random_start = 1, 1, Start.NONE
        self.step_size = self.eps
        super().__post_init__()
