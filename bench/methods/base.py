"""Thin base for training objectives.

A method is built with the model being trained, the recipe's training attack
(ε, step size, steps, norm) and its own hyperparameters. Each method file states
the attack conventions of its official code (inner loss, random start, BN mode)
in ``attack_defaults``, for its default attack ``attack_name`` (PGD unless said
otherwise); the recipe's attack block overrides them, and a recipe that names another
attack (DRA in place of PGD) gets none of them. ``loss`` returns the scalar to minimise
and a dict of per-batch statistics as device tensors (no host synchronisation). A method
whose objective is a sum of named terms implements ``objective`` instead (the terms,
still in the graph, and the statistics); ``loss`` sums them in order, so callers that
only need the loss see one scalar (training-time probes read the terms, bench/probes).
Models referenced by other runs (HAT's helper) arrive in ``helpers``. Logits are cast to
float32 so bf16 autocast only affects the network.

How an epoch runs is the method's too, through two general hooks the training loop calls
(bench/train.py knows no method by name):
  ``begin_epoch(epoch, values)``  this epoch's scheduled parameters (bench/schedules.py:
      ``method.<p>`` and ``attack.<p>``, e.g. FAT's τ, DRA's ε), applied before its first batch;
  ``train_step(x, y, generator, update)``  one batch: the default computes the objective
      under the loop's autocast and calls ``update(terms, x, y)`` once (zero_grad, backward,
      probes, optimiser and lr-schedule step). A method that owns its update (FreeAT's
      replays, DRA's clean step then adversarial step) calls ``update`` several times and
      declares how many in ``updates_per_batch``, so the lr schedule and the probes count
      optimiser steps. State a method keeps across batches (FreeAT's perturbation) goes
      through ``state_dict`` / ``load_state_dict`` into state.pt, so a resumed run is exact.

A model with HE's head (bench/models/base.py) carries the scale s and margin m of its
training loss: ``self.he`` (identity for a plain model) gives the losses s·(z − m·1_y)
(``margin_logits``) and s·z (``scaled``), and the training attack sees the s-scaled output
(``logit_scale``, as AT_HE's code does; a recipe that sets ``logit_scale`` keeps its own).
``formulas`` declares the objective as data (Table 1 of HE renders them): {"plain" | "he":
{"train": L_T, "adversarial": L_A, "train_here": …, "adversarial_here": …}} with {s}, {m}
filled in from the run's head.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import ATTACKS, build as build_attack
from ..components import Component
from ..models.base import loss_params

Update = Callable[..., torch.Tensor]   # update(loss or terms, x, y) -> the loss


class Method(Component):
    kind = "method"
    attack_name: ClassVar[str] = "pgd"                       # the training attack unless the recipe names one
    attack_defaults: ClassVar[dict[str, Any] | None] = None  # None: no training attack
    # forward-equivalents per training image besides the attack (a forward with its backward is 3,
    # a forward without gradients 1): what `bench plan --cost` counts (bench/cost.py)
    train_passes: ClassVar[float] = 3.0
    formulas: ClassVar[dict[str, dict[str, str]]] = {}       # the objective as data (see the module docstring)

    def __init__(self, model: nn.Module, attack: dict[str, Any] | None = None,
                 helpers: dict[str, nn.Module] | None = None, **params: Any):
        self.model = model
        self.bind(params, helpers)
        self.autocast: Callable[[], Any] = contextlib.nullcontext   # the loop sets its bf16 autocast here
        self.he = loss_params(model)   # HE's s and m (1, 0 without its head)
        self.attack_config = None
        self.attack = None
        if self.attack_defaults is not None:
            self.attack_config = self.training_attack(attack)
            fields = getattr(ATTACKS.get(self.attack_config["name"]), "__dataclass_fields__", {})
            if self.he.s != 1 and "logit_scale" in fields and "logit_scale" not in (attack or {}):
                self.attack_config["logit_scale"] = self.he.s
            self.attack = build_attack(self.attack_config, model)

    @classmethod
    def training_attack(cls, attack: dict[str, Any] | None) -> dict[str, Any] | None:
        """The resolved training attack config: the recipe's block over this method's
        conventions for its default attack (none for another attack, none without an attack)."""
        if cls.attack_defaults is None:
            return None
        attack = dict(attack or {})
        name = attack.pop("name", cls.attack_name)
        defaults = cls.attack_defaults if name == cls.attack_name else {}
        return {"name": name, **defaults, **attack}

    @classmethod
    def declaration(cls, config: dict[str, Any]) -> dict[str, str]:
        """The objective as this method declares it, for a run config: the HE form when the
        run's model head normalises features and weights, else the plain one."""
        head = ((config.get("model") or {}).get("head")) or {}
        form = cls.formulas.get("he" if head.get("fn") and head.get("wn") else "plain", {})
        values = {"s": f"{head.get('s', 1.0):g}", "m": f"{head.get('m', 0.0):g}"}
        return {k: v.format(**values) for k, v in form.items()}

    def resolved(self) -> dict[str, Any]:
        """Everything that defines the objective, for the run log."""
        out: dict[str, Any] = {"name": self.name, **self.params}
        if self.attack is not None:
            out["attack"] = {"name": self.attack_config["name"], **self.attack.params()}
        return out

    # ---- how an epoch runs (the loop's hooks) ------------------------------------------
    @property
    def updates_per_batch(self) -> int:
        """Optimiser steps ``train_step`` takes per batch."""
        return 1

    def begin_epoch(self, epoch: int, values: dict[str, Any]) -> None:
        """Apply this epoch's scheduled parameters: ``method.<p>`` rebinds a parameter,
        ``attack.<p>`` rebuilds the training attack with it."""
        method = {k.partition(".")[2]: v for k, v in values.items() if k.startswith("method.")}
        attack = {k.partition(".")[2]: v for k, v in values.items() if k.startswith("attack.")}
        if method:
            self.bind({**self.params, **method}, self.helpers)
        if attack:
            if self.attack is None:
                raise ValueError(f"{self.name}: attack.* is scheduled but the method has no training attack")
            self.attack_config = {**self.attack_config, **attack}
            self.attack = build_attack(self.attack_config, self.model)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None,
                   update: Update) -> dict[str, torch.Tensor]:
        """One batch: the objective, then one optimiser step. Returns the statistics."""
        with self.autocast():
            terms, stats = self.objective(x, y, generator)
        update(terms, x, y)
        return stats

    def state_dict(self) -> dict[str, Any]:
        """State kept across batches and epochs (tensors and plain types), for state.pt."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state, got {sorted(state)}")

    # ---- the objective -------------------------------------------------------------------
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
