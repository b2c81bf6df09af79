"""Numbers as written in papers: ε is kept as a rational string ("8/255") in configs
and reports and converted to float only where it is used."""
from __future__ import annotations

from fractions import Fraction

from .errors import SpecError


def parse_number(value: object) -> float:
    """``8/255`` → 0.0313…, ``0.5/255``, ``0.3`` → 0.3, ``5e-4`` → 0.0005; bools are rejected."""
    if isinstance(value, bool):
        raise SpecError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            if "/" not in value:
                return float(value)
            num, den = value.split("/")
            return float(Fraction(num.strip()) / Fraction(den.strip()))   # "0.5/255" too
        except (ValueError, ZeroDivisionError):
            pass
    raise SpecError(f"expected a number or a fraction like '8/255', got {value!r}")
