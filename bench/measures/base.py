"""Thin base for measures.

A measure is built with the evaluated model (in eval mode), the models of other runs
it needs (``helpers``, e.g. the standard model whose adversarial directions HAT's
margin follows) and its parameters; :meth:`evaluate` reads a test loader and returns a
JSON-able dict with ``n`` and the metrics a spec's columns may name.
"""
from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from ..errors import SpecError


class Measure:
    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    helpers_required: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: nn.Module, helpers: dict[str, nn.Module] | None = None, **params: Any):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise SpecError(f"measure {self.name!r} has no parameter(s) {sorted(unknown)}; "
                            f"known: {sorted(self.defaults)}")
        self.model = model.eval()
        self.params = {**self.defaults, **params}
        for key, value in self.params.items():
            setattr(self, key, value)
        self.helpers = helpers or {}
        missing = [h for h in self.helpers_required if h not in self.helpers]
        if missing:
            raise SpecError(f"measure {self.name!r} needs helper model(s) {missing}")

    def evaluate(self, loader, seed: int = 0, progress=None) -> dict[str, Any]:
        raise NotImplementedError
