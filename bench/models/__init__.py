"""Model registry. One file per architecture family; width and depth are parameters,
so the narrow variants of the reduced scales are the same code.

Names used in specs may be aliases (``resnet18``) that expand to a family and its
parameters (:data:`ALIASES`); :func:`build` accepts the expanded dict. Every family takes
the option ``head`` (HE's hypersphere embedding, bench/models/base.py), checked here at
plan time by :func:`check_head`.
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
    "wrn34_20": {"name": "wide_resnet", "depth": 34, "widen": 20},
    # ImageNet networks (torchvision's ResNet constructors; HE Table 4): their own family
    "imagenet_resnet50": {"name": "imagenet_resnet", "layers": [3, 4, 6, 3], "width_per_group": 64},
    "imagenet_resnet152": {"name": "imagenet_resnet", "layers": [3, 8, 36, 3], "width_per_group": 64},
    "imagenet_wide_resnet50_2": {"name": "imagenet_resnet", "layers": [3, 4, 6, 3], "width_per_group": 128},
    "imagenet_wide_resnet101_2": {"name": "imagenet_resnet", "layers": [3, 4, 23, 3], "width_per_group": 128},
    # FAT's Table 1 "WRN-32-10" is the authors' Wide_ResNet_Madry(depth=32): (32−2)/6 = 5 blocks
    # per stage, the same blocks, widths and forward as WRN-34-10 ((34−4)/6 = 5), 46,160,474
    # parameters; the suite builds it as WRN-34-10 under the paper's name.
    "wrn32_10": {"name": "wide_resnet", "depth": 34, "widen": 10},
    "wrn58_10": {"name": "wide_resnet", "depth": 58, "widen": 10},
    "wrn40_4": {"name": "wide_resnet", "depth": 40, "widen": 4},
}

# HE's head (bench/models/base.py HypersphereHead): option → accepted values
HEAD_OPTIONS: dict[str, tuple[str, ...]] = {"fn": ("bool",), "wn": ("bool", "projection", "reparam"),
                                            "s": ("number",), "m": ("number",), "mhe": ("bool",),
                                            "bias": ("bool", "None")}


def check_head(head: Any) -> None:
    """One clear error for an ill-formed ``head`` option (torch-free, at plan time)."""
    from ..errors import SpecError

    if not isinstance(head, dict):
        raise SpecError(f"model head must be a mapping of {sorted(HEAD_OPTIONS)}, got {head!r}")
    unknown = sorted(set(head) - set(HEAD_OPTIONS))
    if unknown:
        raise SpecError(f"model head has no option(s) {unknown}; known: {sorted(HEAD_OPTIONS)}")
    for key, value in head.items():
        kinds = HEAD_OPTIONS[key]
        ok = (("bool" in kinds and isinstance(value, bool)) or ("None" in kinds and value is None)
              or ("number" in kinds and isinstance(value, (int, float)) and not isinstance(value, bool))
              or (isinstance(value, str) and value in kinds))
        if not ok:
            raise SpecError(f"model head: {key} must be one of {list(kinds)}, got {value!r}")
    if head.get("s", 1.0) <= 0:
        raise SpecError(f"model head: the scale s must be positive, got {head['s']}")
    if head.get("mhe") and not (head.get("fn") and head.get("wn")):
        raise SpecError("model head: m-HE (mhe: true) needs fn and wn: θ = arccos(W̃ᵀz̃)")


def expand(model: str | dict[str, Any]) -> dict[str, Any]:
    """``"resnet18"`` or ``{"name": "resnet18", "width": 8}`` → family dict with parameters."""
    spec = {"name": model} if isinstance(model, str) else dict(model)
    alias = ALIASES.get(spec["name"])
    if alias is not None:
        spec = {**alias, **{k: v for k, v in spec.items() if k != "name"}}
    MODELS.check(spec["name"])
    if spec.get("head"):
        check_head(spec["head"])
    return spec


def build(model: str | dict[str, Any], num_classes: int, in_channels: int = 3):
    spec = expand(model)
    params = {k: v for k, v in spec.items() if k != "name"}
    return MODELS.get(spec["name"])(num_classes=num_classes, in_channels=in_channels, **params)
