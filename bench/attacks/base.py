"""Thin base for attacks: binds the model, sets the BatchNorm mode for the duration
of the attack and restores the model's mode afterwards, parses ε given as "8/255",
and evaluates robust accuracy batch by batch without host synchronisation."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

from ..errors import SpecError
from ..numbers import parse_number


class BNMode(str, Enum):
    """BatchNorm mode while the attack runs: 'eval' (TRADES, MART, HAT, BAT, FAT, HE)
    or 'train' (Rice et al. 2020; Wong et al. 2020), which also updates running stats."""
    EVAL = "eval"
    TRAIN = "train"


@contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[None]:
    was = model.training
    model.train(training)
    try:
        yield
    finally:
        model.train(was)


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """The model's parameters without requires_grad while an attack runs: its gradients are
    the input's only, so no weight gradient is computed or kept for (a compiled model's fixed
    backward graph would otherwise compute them all on every attack step)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def enum_value(enum: type[Enum], value: Any, what: str) -> Enum:
    try:
        return enum(value)
    except ValueError:
        raise SpecError(f"{what} must be one of {[e.value for e in enum]}, got {value!r}") from None


def _checked(name: str, annotation: str, value: Any) -> Any:
    """A spec's value of a field checked against the field's annotation (a string here);
    numbers given as fractions ("8/255") become floats."""
    kinds = {t.strip() for t in str(annotation).split("|")}
    if value is None and "None" in kinds:
        return value
    kinds.discard("None")
    if "float" in kinds:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise SpecError(f"{name} must be a number (or a fraction like '8/255'), got {value!r}")
        return parse_number(value)
    if kinds == {"int"} and (isinstance(value, bool) or not isinstance(value, int)):
        raise SpecError(f"{name} must be an integer, got {value!r}")
    if kinds == {"bool"} and not isinstance(value, bool):
        raise SpecError(f"{name} must be true or false, got {value!r}")
    return value


@dataclass
class Attack:
    """Subclasses are dataclasses of their hyperparameters and implement :meth:`perturb`.
    Fields are checked against their annotations when the attack is built, and
    :meth:`check_params` builds one without a model at plan time, so a spec's unknown or
    ill-typed parameter is an error before any job runs. ``metrics``: the result keys
    :meth:`evaluate` gives, which a table's columns may read."""

    model: nn.Module
    bn_mode: BNMode = BNMode.EVAL
    metrics: ClassVar[tuple[str, ...]] = ("clean", "robust")

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name != "model" and not isinstance(getattr(self, f.name), Enum):
                setattr(self, f.name, _checked(f.name, f.type, getattr(self, f.name)))
        self.bn_mode = enum_value(BNMode, self.bn_mode, "bn_mode")

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Raise one SpecError for a parameter this attack does not have or a bad value."""
        known = sorted(f.name for f in fields(cls) if f.name != "model")
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise SpecError(f"attack {cls.__name__} has no parameter(s) {unknown}; known: {known}")
        try:
            cls(None, **params)
        except SpecError as e:
            raise SpecError(f"attack {cls.__name__}: {e}") from None

    def params(self) -> dict[str, Any]:
        return {f.name: (getattr(self, f.name).value if isinstance(getattr(self, f.name), Enum)
                         else getattr(self, f.name))
                for f in fields(self) if f.name != "model"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.params().items())})"

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        with self.running():
            return self.perturb(x, y, generator).detach()

    @contextmanager
    def running(self) -> Iterator[None]:
        """The model as an attack's steps need it: BatchNorm in the attack's mode, the parameters
        frozen (see :func:`frozen`), gradients on; restored afterwards."""
        with model_mode(self.model, self.bn_mode is BNMode.TRAIN), frozen(self.model), torch.enable_grad():
            yield

    def perturb(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, loader, seed: int = 0, progress=None) -> dict[str, Any]:
        """Clean and robust accuracy over ``loader`` (the model is evaluated in eval mode)."""
        from ..data.loader import epoch_generator

        g = epoch_generator(loader.device, seed, 0, stream=1)
        clean = torch.zeros((), device=loader.device, dtype=torch.long)
        robust = torch.zeros((), device=loader.device, dtype=torch.long)
        for x, y in loader.batches():
            with model_mode(self.model, False), torch.no_grad():
                ok = self.model(x).argmax(1) == y
            x_adv = self(x, y, g)
            with model_mode(self.model, False), torch.no_grad():
                ok_adv = ok & (self.model(x_adv).argmax(1) == y)
            clean += ok.sum()
            robust += ok_adv.sum()
            if progress is not None:
                progress.update(1)
        n = loader.n
        return {"n": n, "clean": 100.0 * clean.item() / n, "robust": 100.0 * robust.item() / n}


def check_budget(eps: float, step_size: float | None, linf: bool, bounds: Any) -> None:
    """ε and the step size are non-negative; an ℓ∞ ε on images in [0, 1] is at most 1 (a
    value like 8 instead of 8/255 is caught here, before any job runs)."""
    if eps < 0 or (step_size is not None and step_size < 0):
        raise SpecError(f"eps and step_size must be non-negative, got eps={eps}, step_size={step_size}")
    if linf and bounds is not None and tuple(bounds) == (0.0, 1.0) and eps > 1:
        raise SpecError(f"an ℓ∞ eps on images in [0, 1] is at most 1, got {eps} (write 8/255, not 8)")


def number(value: Any) -> float:
    return parse_number(value)
