"""Measurement registry: evaluations that are not an attack's robust accuracy (the
directional margin of HAT, accuracy under common corruptions, …). One file per measure."""
from __future__ import annotations

from ..registry import Registry

MEASURES: Registry = Registry("measure", "bench.measures")
