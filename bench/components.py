"""The thin base shared by methods, measures and probes: named hyperparameters with
defaults (unknown ones are a clear error) and the models of other runs they need (``helpers``).

Parameters are declared by their defaults: a parameter takes values of its default's
type (a float parameter takes numbers and fractions like "8/255"; None and dicts take
anything), and ``choices`` closes a vocabulary. :meth:`Component.check_params` checks a
spec's parameters against the declaration without building anything, so the plan rejects
``betta``, ``beta: "six"`` or ``robust_loss: kll`` before any job starts; ``validate`` is
the hook for a component's own rules (ranges, combinations).
"""
from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from .errors import SpecError
from .numbers import parse_number


def type_error(value: Any, default: Any) -> str | None:
    """Why ``value`` is not a value of ``default``'s type (None if it is)."""
    if default is None or isinstance(default, dict):
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "a boolean"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(default, float):
        try:
            parse_number(value)
            return None
        except SpecError:
            return "a number (or a fraction like '8/255')"
    if isinstance(default, str):
        return None if isinstance(value, str) else "a string"
    if isinstance(default, (list, tuple)):
        return None if isinstance(value, (list, tuple)) else "a list"
    return None


class Component:
    kind: ClassVar[str] = "component"
    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}   # closed vocabularies of some parameters
    helpers_required: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Raise one SpecError for an unknown parameter or a value of the wrong type."""
        unknown = sorted(set(params) - set(cls.defaults) - set(cls.helpers_required))
        if unknown:
            raise SpecError(f"{cls.kind} {cls.name!r} has no parameter(s) {unknown}; known: {sorted(cls.defaults)}")
        for key, value in params.items():
            if key not in cls.defaults:
                continue
            problem = type_error(value, cls.defaults[key])
            if problem:
                raise SpecError(f"{cls.kind} {cls.name!r}: {key} must be {problem}, got {value!r}")
            if key in cls.choices and value not in cls.choices[key]:
                raise SpecError(f"{cls.kind} {cls.name!r}: {key} must be one of {list(cls.choices[key])}, "
                                f"got {value!r}")
        cls.validate({**cls.defaults, **params})

    @classmethod
    def validate(cls, params: dict[str, Any]) -> None:
        """A component's own rules on its resolved parameters (default: none)."""

    def bind(self, params: dict[str, Any], helpers: dict[str, nn.Module] | None) -> None:
        """Set ``self.params`` (defaults updated by ``params``, each also an attribute) and
        ``self.helpers``, checking both."""
        self.check_params(params)
        self.params = {k: parse_number(v) if isinstance(self.defaults.get(k), float) and v is not None else v
                       for k, v in {**self.defaults, **params}.items()}
        for key, value in self.params.items():
            setattr(self, key, value)
        self.helpers = helpers or {}
        missing = [h for h in self.helpers_required if h not in self.helpers]
        if missing:
            raise SpecError(f"{self.kind} {self.name!r} needs helper model(s) {missing}")
