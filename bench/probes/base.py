"""Thin base for training-time probes.

A probe is built with the model being trained and its parameters. The training loop
calls, for every batch, :meth:`after_loss` (the method's objective computed, before
``backward``; ``terms`` are the objective's named summands, still in the graph, their
sum is the loss) and :meth:`after_backward` (gradients in ``p.grad``, before the
optimiser step), and after every epoch :meth:`end_epoch`, which returns the epoch's
records (JSON-able dicts). A probe must not change training: it may not touch
``p.grad``, the BatchNorm running statistics or any random generator (helpers below),
and it should keep its per-batch work on the device and read it back only at its own
recording points. Records are saved with the training state, so a resumed run keeps
them. :meth:`summary` turns a run's records into scalar metrics for a figure's columns.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from ..components import Component


@dataclass
class Step:
    """Where the loop is: epoch (0-indexed), batch within it, batches per epoch."""
    epoch: int
    batch: int
    batches: int

    @property
    def index(self) -> int:          # 0-indexed batch counted from the start of training
        return self.epoch * self.batches + self.batch

    @property
    def last_of_epoch(self) -> bool:
        return self.batch == self.batches - 1


class Probe(Component):
    kind = "probe"

    def __init__(self, model: nn.Module, **params: Any):
        self.model = model
        self.bind(params, None)

    def after_loss(self, step: Step, x: torch.Tensor, y: torch.Tensor, terms: dict[str, torch.Tensor],
                   loss: torch.Tensor) -> None:
        pass

    def after_backward(self, step: Step, loss: torch.Tensor) -> None:
        pass

    def end_epoch(self, epoch: int) -> list[dict[str, Any]]:
        return []

    @staticmethod
    def summary(records: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
        return {}


def parameters(model: nn.Module) -> list[nn.Parameter]:
    """θ: every trainable parameter, in a fixed order."""
    return [p for p in model.parameters() if p.requires_grad]


def flat_grad(output: torch.Tensor, params: list[nn.Parameter]) -> torch.Tensor:
    """∇θ output as one flat vector; the graph is kept and ``p.grad`` is not touched."""
    grads = torch.autograd.grad(output, params, retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).float() for p, g in zip(params, grads)])


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """M(x) = p_y − max_{i≠y} p_i per example (BAT Eq. 4)."""
    p = logits.float().softmax(1)
    p_y = p.gather(1, y[:, None])[:, 0]
    others = p.scatter(1, y[:, None], float("-inf"))
    return p_y - others.max(1).values


@contextlib.contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Run extra forward passes without a trace: buffers (BatchNorm running statistics,
    batch counters) restored afterwards and every random generator forked."""
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    devices = sorted({b.device.index for b, _ in saved if b.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            with torch.no_grad():
                for b, copy in saved:
                    # through .data: BatchNorm updates its running statistics inside the op
                    # without a version bump, and the graphs that saved them stay valid
                    b.data.copy_(copy)


def margin_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: list[nn.Parameter]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(∇θ mean M(x), mean M(x)) on the clean batch, forwarded in the model's current
    (training) mode as the method's own clean forward, without a trace."""
    with untouched(model):
        m = margin(model(x), y).mean()
    return flat_grad(m, params), m.detach()


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-30)
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


def mean_of(records: list[dict[str, Any]], key: str, first: int = 1, last: int | None = None) -> float | None:
    """Mean of ``key`` over the records whose epoch lies in [first, last] (1-indexed)."""
    vals = [r[key] for r in records if key in r and r["epoch"] >= first and (last is None or r["epoch"] <= last)
            and r[key] is not None and math.isfinite(r[key])]
    return sum(vals) / len(vals) if vals else None
