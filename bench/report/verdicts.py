"""Cell verdicts: regenerated mean±std against the published value."""
from __future__ import annotations

import math

ABS_TOL = 1.0  # percentage points: below this a difference is never called a discrepancy
K_STD = 2.0    # … and above it, only beyond K_STD combined standard deviations

REPRODUCED = "reproduced"
DIFFERS = "differs"
SCALE = "scale ≠ paper"
SUBSTITUTE = "substitute data"
NOT_RUN = "not run"
CITED = "cited, not regenerated"
MATCHES = "matches the runs"
NOT_REPORTED = "not in paper"
ABSENT = "–"
DECLARED = "declared by the method"
HARDWARE = "hardware-bound: not compared"

RULE = (f"reproduced when |Δ| ≤ max({ABS_TOL:g} pp, {K_STD:g}·√(std_pub² + std_regen²)); "
        f"verdicts against published numbers are only given at the paper scale on exact data")


def tolerance(std_pub: float | None, std_regen: float | None) -> float:
    return max(ABS_TOL, K_STD * math.sqrt((std_pub or 0.0) ** 2 + (std_regen or 0.0) ** 2))


def cell_verdict(*, planned: bool, mean: float | None, std: float | None, published: float | None,
                 std_pub: float | None, paper_scale: bool, exact_data: bool) -> str:
    if not planned:
        return ABSENT if published is None else NOT_RUN
    if mean is None:
        return NOT_RUN
    if published is None:
        return NOT_REPORTED
    if not paper_scale:
        return SCALE
    if not exact_data:
        return SUBSTITUTE
    return REPRODUCED if abs(mean - published) <= tolerance(std_pub, std) else DIFFERS


def param_verdict(value: float | None, published: float | None) -> str:
    """A hyperparameter printed in the paper against the one the runs use."""
    if value is None:
        return ABSENT if published is None else DIFFERS
    if published is None:
        return NOT_REPORTED
    return MATCHES if math.isclose(value, published, rel_tol=1e-9) else DIFFERS
