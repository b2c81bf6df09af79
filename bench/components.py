"""The thin base shared by methods and measures: named hyperparameters with defaults
(unknown ones are a clear error) and the models of other runs they need (``helpers``)."""
from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from .errors import SpecError


class Component:
    kind: ClassVar[str] = "component"
    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    helpers_required: ClassVar[tuple[str, ...]] = ()

    def bind(self, params: dict[str, Any], helpers: dict[str, nn.Module] | None) -> None:
        """Set ``self.params`` (defaults updated by ``params``, each also an attribute) and
        ``self.helpers``, checking both."""
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise SpecError(f"{self.kind} {self.name!r} has no parameter(s) {sorted(unknown)}; "
                            f"known: {sorted(self.defaults)}")
        self.params = {**self.defaults, **params}
        for key, value in self.params.items():
            setattr(self, key, value)
        self.helpers = helpers or {}
        missing = [h for h in self.helpers_required if h not in self.helpers]
        if missing:
            raise SpecError(f"{self.kind} {self.name!r} needs helper model(s) {missing}")
