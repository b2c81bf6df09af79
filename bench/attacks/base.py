"""Thin base for attacks: binds the model, sets the BatchNorm mode for the duration
of the attack and restores the model's mode afterwards, parses ε given as "8/255",
and evaluates robust accuracy batch by batch without host synchronisation."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Iterator

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


def enum_value(enum: type[Enum], value: Any, what: str) -> Enum:
    try:
        return enum(value)
    except ValueError:
        raise SpecError(f"{what} must be one of {[e.value for e in enum]}, got {value!r}") from None


@dataclass
class Attack:
    """Subclasses are dataclasses of their hyperparameters and implement :meth:`perturb`."""

    model: nn.Module
    bn_mode: BNMode = BNMode.EVAL

    def __post_init__(self) -> None:
        self.bn_mode = enum_value(BNMode, self.bn_mode, "bn_mode")

    def params(self) -> dict[str, Any]:
        return {f.name: (getattr(self, f.name).value if isinstance(getattr(self, f.name), Enum)
                         else getattr(self, f.name))
                for f in fields(self) if f.name != "model"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.params().items())})"

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        with model_mode(self.model, self.bn_mode is BNMode.TRAIN), torch.enable_grad():
            return self.perturb(x, y, generator).detach()

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


def number(value: Any) -> float:
    return parse_number(value)
