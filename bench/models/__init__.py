"""Model registry. One file per architecture family; width and depth are parameters,
so the narrow variants of the reduced scales are the same code.

Names used in specs may be aliases (``resnet18``) that expand to a family and its
parameters (:data:`ALIASES`); :func:`build` accepts the expanded dict.
"""
from __future__ import annotations

from typing import Any

from ..registry import Registry

MODELS: Registry = Registry("model", "bench.models")

# Paper names → family and parameters (He et al. 2016; Zagoruyko & Komodakis 2016).
ALIASES: dict[str, dict[str, Any]] = {
    "resnet18": {"name": "resnet", "blocks": [2, 2, 2, 2], "width": 64},
    "resnet34": {"name": "resnet", "blocks": [3, 4, 6, 3], "width": 64},
    "resnet50": {"name": "resnet", "block": "bottleneck", "blocks": [3, 4, 6, 3], "width": 64},
    "resnet101": {"name": "resnet", "block": "bottleneck", "blocks": [3, 4, 23, 3], "width": 64},
    "trades_example_net": {"name": "mnist_cnn", "c1": 20, "c2": 50, "hidden": 500, "dropout": 0.0},
    "trades_net_mnist": {"name": "mnist_cnn", "c1": 10, "c2": 20, "hidden": 50, "dropout": 0.5},
    "preact_resnet18": {"name": "preact_resnet", "blocks": [2, 2, 2, 2], "width": 64},
    "wrn28_10": {"name": "wide_resnet", "depth": 28, "widen": 10},
    "wrn34_10": {"name": "wide_resnet", "depth": 34, "widen": 10},
}


def expand(model: str | dict[str, Any]) -> dict[str, Any]:
    """``"resnet18"`` or ``{"name": "resnet18", "width": 8}`` → family dict with parameters."""
    spec = {"name": model} if isinstance(model, str) else dict(model)
    alias = ALIASES.get(spec["name"])
    if alias is not None:
        spec = {**alias, **{k: v for k, v in spec.items() if k != "name"}}
    MODELS.check(spec["name"])
    return spec


def build(model: str | dict[str, Any], num_classes: int, in_channels: int = 3):
    spec = expand(model)
    params = {k: v for k, v in spec.items() if k != "name"}
    return MODELS.get(spec["name"])(num_classes=num_classes, in_channels=in_channels, **params)
