"""Thin base for training objectives.

A method is built with the model being trained, the recipe's training attack
(ε, step size, steps, norm) and its own hyperparameters. Each method file states
the attack conventions of its official code (inner loss, random start, BN mode)
in ``attack_defaults``; the recipe's attack block overrides them. ``loss`` returns
the scalar to minimise and a dict of per-batch statistics as device tensors (no
host synchronisation). A method whose objective is a sum of named terms implements
``objective`` instead (the terms, still in the graph, and the statistics); ``loss`` sums
them in order, so callers that only need the loss see one scalar (training-time probes
read the terms, bench/probes). Models referenced by other runs (HAT's helper) arrive in
``helpers``. Logits are cast to float32 so bf16 autocast only affects the network.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import build as build_attack
from ..components import Component


class Method(Component):
    kind = "method"
    attack_defaults: ClassVar[dict[str, Any] | None] = None  # None: no training attack

    def __init__(self, model: nn.Module, attack: dict[str, Any] | None = None,
                 helpers: dict[str, nn.Module] | None = None, **params: Any):
        self.model = model
        self.bind(params, helpers)
        self.attack_config = None
        self.attack = None
        if self.attack_defaults is not None:
            self.attack_config = {"name": "pgd", **self.attack_defaults, **(attack or {})}
            self.attack = build_attack(self.attack_config, model)

    def resolved(self) -> dict[str, Any]:
        """Everything that defines the objective, for the run log."""
        out: dict[str, Any] = {"name": self.name, **self.params}
        if self.attack is not None:
            out["attack"] = {"name": self.attack_config["name"], **self.attack.params()}
        return out

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).float()

    def objective(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
                  ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The objective's named summands (in the graph) and the statistics; a method that
        only defines ``loss`` has one term, "loss"."""
        if type(self).loss is Method.loss:
            raise NotImplementedError(f"{self.name}: define objective or loss")
        loss, stats = self.loss(x, y, generator)
        return {"loss": loss}, stats

    def loss(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if type(self).objective is Method.objective:
            raise NotImplementedError(f"{self.name}: define objective or loss")
        terms, stats = self.objective(x, y, generator)
        return total(terms), stats


def total(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss: the terms summed in their order (a + b, as the methods wrote it)."""
    values = iter(terms.values())
    out = next(values)
    for v in values:
        out = out + v
    return out


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(1) == y).float().mean().detach()


def kl_batchmean(logits_adv: torch.Tensor, logits_clean: torch.Tensor) -> torch.Tensor:
    """(1/B)·Σ KL(softmax(clean) ‖ softmax(adv)), gradients through both sides (TRADES)."""
    return F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits_clean, 1), reduction="sum") / len(logits_adv)
