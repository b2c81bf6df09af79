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
    "preact_resnet18": {"name": "preact_resnet", "blocks": [2, 2, 2, 2], "width": 64},
    "wrn28_10": {"name": "wide_resnet", "depth": 28, "widen": 10},
    "wrn34_10": {"name": "wide_resnet", "depth": 34, "widen": 10},
    # FAT's Table 1 "WRN-32-10" is the authors' Wide_ResNet_Madry(depth=32): (32−2)/6 = 5 blocks
    # per stage, the same blocks, widths and forward as WRN-34-10 ((34−4)/6 = 5), 46,160,474
    # parameters; the suite builds it as WRN-34-10 under the paper's name.
    "wrn32_10": {"name": "wide_resnet", "depth": 34, "widen": 10},
    "wrn58_10": {"name": "wide_resnet", "depth": 58, "widen": 10},
    "wrn40_4": {"name": "wide_resnet", "depth": 40, "widen": 4},
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
