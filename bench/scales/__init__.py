"""Scales (smoke, mini, paper): declarative overrides applied to every spec.
A spec never branches on scale."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UnknownNameError
from ..specs import read_yaml, validate

HERE = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.yaml"))


def load(name: str) -> dict[str, Any]:
    if name not in names():
        raise UnknownNameError(f"unknown scale {name!r}; known: {', '.join(names())}")
    path = HERE / f"{name}.yaml"
    scale = read_yaml(path)
    validate(scale, "scale", str(path))
    return scale
