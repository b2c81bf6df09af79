"""Training-objective registry: one file per method (standard, pgd_at, trades, mart, hat)."""
from __future__ import annotations

from ..registry import Registry

METHODS: Registry = Registry("method", "bench.methods")
