"""Attack registry: one file per attack (``pgd``, ``fgsm``, ``autoattack``)."""
from __future__ import annotations

from typing import Any

from ..registry import Registry

ATTACKS: Registry = Registry("attack", "bench.attacks")


def build(config: dict[str, Any], model):
    """``{"name": "pgd", "eps": "8/255", ...}`` → an attack bound to ``model``."""
    params = {k: v for k, v in config.items() if k != "name"}
    return ATTACKS.get(config["name"])(model, **params)
