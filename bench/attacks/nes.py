"""NES (Ilyas et al., ICML 2018) as HE describes and evaluates it (Pang et al., NeurIPS 2020,
Sec. 4.2, App. B.2 Eqs. 18 and 23, Table 8 "NES-20/50/80"): SPSA's attack
(bench/attacks/spsa.py: antithetic gradient estimate of the margin J = Z_y − max_{i≠y} Z_i
from q directions, BIM sign step, accuracy after 20/50/80 iterations) with the directions
u_i drawn from a standard Gaussian ("NES randomly samples from a Gaussian distribution to
acquire the direction vectors while SPSA samples from a Rademacher distribution").

Threat model ℓ∞, score-based black box, inputs in [0, 1], model in eval mode.
Arguments (defaults) as spsa: eps ("8/255"), step_size (None: ε/10), iterations (80),
checkpoints ([20, 50, 80]), samples q (128), sigma (0.001), chunk (64), bn_mode ("eval").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from . import ATTACKS
from .spsa import SPSA


@ATTACKS.register("nes")
@dataclass(repr=False)
class NES(SPSA):
    distribution: ClassVar[str] = "gaussian"
