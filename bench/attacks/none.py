"""No attack: the identity. A protocol with this attack measures clean accuracy only.

Arguments: none. Inputs unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import ATTACKS
from .base import Attack


@ATTACKS.register("none")
@dataclass(repr=False)
class NoAttack(Attack):
    def perturb(self, x, y, generator=None):
        return x
