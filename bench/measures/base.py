"""Thin base for measures.

A measure is built with the evaluated model (in eval mode), the models of other runs
it needs (``helpers``, e.g. the standard model whose adversarial directions HAT's
margin follows) and its parameters; :meth:`evaluate` reads a test loader and returns a
JSON-able dict with ``n`` and the metrics a spec's columns may name.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ..components import Component


class Measure(Component):
    kind = "measure"

    def __init__(self, model: nn.Module, helpers: dict[str, nn.Module] | None = None, **params: Any):
        self.model = model.eval()
        self.bind(params, helpers)

    def evaluate(self, loader, seed: int = 0, progress=None) -> dict[str, Any]:
        raise NotImplementedError
