"""Optimisers and learning-rate schedules, all stepped once per batch.

Schedules (``schedule.name``):
  onecycle   one-cycle cosine (Smith & Topin 2018) with torch's OneCycleLR formula: cosine
             warm-up over ``pct_start`` of all steps from lr/div_factor to lr, cosine down
             to lr/(div_factor·final_div_factor). ``cycle_momentum`` (False) also cycles
             momentum between 0.95 and 0.85 as OneCycleLR's defaults do. Unlike
             OneCycleLR it also accepts runs of only a few steps (the smoke scale).
  piecewise  lr·gamma^k after the k-th of ``milestones`` (epochs, counted from 0), or
             lr·factors[k] when ``factors`` is given.
  constant   lr throughout.
  cosine     cosine annealing without restarts (Loshchilov & Hutter 2016), set per epoch as
             Carmon et al.'s robust self-training code does: lr·½(1 + cos(π·e/E)) in epoch e
             (counted from 0) of E; the last epoch keeps a small positive lr.
  cyclic     one triangular cycle (Smith 2017): linear from 0 up to lr at ``pct_start`` (0.5)
             of all steps, then linear down to 0 at the end; torch's CyclicLR with base_lr=0,
             max_lr=lr, step_size_up=pct_start·steps, step_size_down=(1−pct_start)·steps
             (BAT's library: ``Cyclic(base_lr=0, max_lr=0.3)``, both halves steps/2). The first
             batch therefore uses lr 0, as CyclicLR does. ``cycle_momentum`` (False) also cycles
             SGD momentum between 0.9 at the ends and 0.8 at the peak, CyclicLR's defaults.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch.optim.adam import adam as adam_update
from torch.optim.sgd import sgd as sgd_update

from .errors import SpecError


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


class OneCycle(torch.optim.lr_scheduler.LRScheduler):
    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, pct_start: float = 0.25,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, cycle_momentum: bool = False,
                 base_momentum: float = 0.85, max_momentum: float = 0.95):
        self.peak = float(pct_start * total_steps) - 1   # OneCycleLR's phase boundaries
        self.end = total_steps - 1
        self.div, self.final_div = div_factor, final_div_factor
        self.cycle_momentum, self.momenta = cycle_momentum, (base_momentum, max_momentum)
        self.max_lrs = [g["lr"] for g in optimizer.param_groups]
        super().__init__(optimizer)

    def _phase(self, step: int) -> tuple[int, float]:
        if step <= self.peak:
            return 0, step / self.peak if self.peak > 0 else 1.0
        span = self.end - self.peak
        return 1, (step - self.peak) / span if span > 0 else 1.0

    def get_lr(self) -> list[float]:
        phase, pct = self._phase(self.last_epoch)
        if self.cycle_momentum:
            lo, hi = self.momenta
            for g in self.optimizer.param_groups:
                g["momentum"] = _cos(hi, lo, pct) if phase == 0 else _cos(lo, hi, pct)
        out = []
        for max_lr in self.max_lrs:
            initial = max_lr / self.div
            out.append(_cos(initial, max_lr, pct) if phase == 0 else _cos(max_lr, initial / self.final_div, pct))
        return out


class Cyclic(torch.optim.lr_scheduler.LRScheduler):
    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, pct_start: float = 0.5,
                 cycle_momentum: bool = False, base_momentum: float = 0.8, max_momentum: float = 0.9):
        if not 0 < pct_start <= 1:
            raise SpecError(f"cyclic schedule: pct_start must be in (0, 1], got {pct_start}")
        if cycle_momentum and any("momentum" not in g for g in optimizer.param_groups):
            raise SpecError("cyclic schedule: cycle_momentum needs an optimizer with momentum (sgd)")
        self.up = float(pct_start * total_steps)        # CyclicLR's step_size_up
        self.total = float(total_steps)
        self.cycle_momentum, self.momenta = cycle_momentum, (base_momentum, max_momentum)
        self.max_lrs = [g["lr"] for g in optimizer.param_groups]
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """Fraction of the peak lr at ``step``: 0 → 1 at ``up`` → 0 at the last step + 1."""
        if step <= self.up:
            return step / self.up if self.up > 0 else 1.0
        down = self.total - self.up
        return max(0.0, (self.total - step) / down) if down > 0 else 0.0

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        if self.cycle_momentum:
            lo, hi = self.momenta
            for g in self.optimizer.param_groups:
                g["momentum"] = hi - (hi - lo) * f
        return [max_lr * f for max_lr in self.max_lrs]


def _step_dtype() -> torch.dtype:   # torch.optim.optimizer._get_scalar_dtype (not fused)
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class _Lean(torch.optim.Optimizer):
    """A torch optimiser's update computed by torch's own functional kernel (``torch.optim.sgd.sgd``,
    ``torch.optim.adam.adam``, called with the arguments the class's step passes: the same
    arithmetic, tested bit-identical), without the constructor and methods of
    torch.optim.Optimizer: each imports ``torch._dynamo`` when first called, 1.3–2 s of a
    training job here. A subclass, so torch's schedulers accept it; it holds what they and a
    checkpoint read (``param_groups``, ``defaults``, ``state``) in torch's layout, and its
    state_dict has torch's format (per-parameter state by parameter index)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], defaults: dict[str, Any]):
        self.defaults = defaults
        self.param_groups = [{"params": list(params), **defaults}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.detach_().zero_()

    def state_dict(self) -> dict[str, Any]:
        index = {p: i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        return {"state": {index[p]: dict(s) for p, s in self.state.items()},
                "param_groups": [{**{k: v for k, v in g.items() if k != "params"},
                                  "params": [index[p] for p in g["params"]]} for g in self.param_groups]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("optimizer state: its parameter groups do not match this model's")
        for group, saved in zip(self.param_groups, groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        params = [p for g in self.param_groups for p in g["params"]]
        self.state = {}
        for i, saved in state_dict["state"].items():
            p = params[int(i)]
            # torch keeps Adam's step counter as it was saved (a CPU float32 scalar); the rest
            # follows the parameter's device and dtype
            self.state[p] = {k: v.clone() if k == "step" else v.to(p.device, p.dtype) for k, v in saved.items()}


class SGD(_Lean):
    """torch.optim.SGD (see _Lean)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        if nesterov and momentum <= 0:
            raise SpecError("SGD: nesterov needs a positive momentum")
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": 0.0, "weight_decay": weight_decay,
                                  "nesterov": nesterov, "maximize": False, "foreach": None,
                                  "differentiable": False, "fused": None})

    @torch.no_grad()
    def step(self, closure=None):   # noqa: D102 - torch.optim.SGD.step's loop
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            buffers = [self.state.get(p, {}).get("momentum_buffer") for p in params] if group["momentum"] else []
            sgd_update(params, [p.grad for p in params], buffers,
                       has_sparse_grad=any(p.grad.is_sparse for p in params), foreach=group["foreach"],
                       fused=group["fused"], weight_decay=group["weight_decay"], momentum=group["momentum"],
                       lr=group["lr"], dampening=group["dampening"], nesterov=group["nesterov"],
                       maximize=group["maximize"])
            for p, buf in zip(params, buffers):
                self.state.setdefault(p, {})["momentum_buffer"] = buf


class Adam(_Lean):
    """torch.optim.Adam with its defaults (betas 0.9, 0.999; eps 1e-8; L2 weight decay, not
    AdamW's; no amsgrad) (see _Lean)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": weight_decay,
                                  "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                                  "differentiable": False, "fused": None, "decoupled_weight_decay": False})

    @torch.no_grad()
    def step(self, closure=None):   # noqa: D102 - torch.optim.Adam.step's loop (_init_group's lazy state)
        for group in self.param_groups:
            if group["amsgrad"] or group["capturable"] or group["fused"]:
                raise ValueError("bench.optim.Adam: amsgrad, capturable and fused are not supported")
            params = [p for p in group["params"] if p.grad is not None]
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("Adam does not support sparse gradients")
            for p in params:
                if not self.state.get(p):
                    self.state[p] = {"step": torch.tensor(0.0, dtype=_step_dtype(), device="cpu"),
                                     "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                     "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            states = [self.state[p] for p in params]
            beta1, beta2 = group["betas"]
            adam_update(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                        [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states],
                        foreach=group["foreach"], capturable=False, differentiable=False, fused=None,
                        grad_scale=None, found_inf=None, has_complex=any(torch.is_complex(p) for p in params),
                        decoupled_weight_decay=group["decoupled_weight_decay"], amsgrad=False, beta1=beta1,
                        beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
                        maximize=group["maximize"])


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: dict[str, Any]) -> torch.optim.Optimizer:
    cfg = dict(cfg)
    name = cfg.pop("name")
    if name == "sgd":
        return SGD(params, lr=cfg["lr"], momentum=cfg.get("momentum", 0.9), nesterov=cfg.get("nesterov", False),
                   weight_decay=cfg.get("weight_decay", 0.0))
    if name == "adam":
        return Adam(params, lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 0.0))
    raise SpecError(f"unknown optimizer {name!r} (known: sgd, adam)")


def build_schedule(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], epochs: int,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    name = cfg["name"]
    total = epochs * steps_per_epoch
    if name == "onecycle":
        return OneCycle(optimizer, total, pct_start=cfg.get("pct_start", 0.25),
                        div_factor=cfg.get("div_factor", 25.0),
                        final_div_factor=cfg.get("final_div_factor", 1e4),
                        cycle_momentum=bool(cfg.get("cycle_momentum", False)))
    if name == "piecewise":
        milestones = list(cfg["milestones"])
        factors = cfg.get("factors") or [cfg.get("gamma", 0.1) ** (k + 1) for k in range(len(milestones))]
        if len(factors) != len(milestones):
            raise SpecError("piecewise schedule: 'factors' must match 'milestones'")

        def factor(step: int) -> float:
            epoch = step // steps_per_epoch
            passed = sum(epoch >= m for m in milestones)
            return 1.0 if passed == 0 else factors[passed - 1]

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if name == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * (step // steps_per_epoch) / epochs)))
    if name == "cyclic":
        return Cyclic(optimizer, total, pct_start=cfg.get("pct_start", 0.5),
                      cycle_momentum=bool(cfg.get("cycle_momentum", False)))
    raise SpecError(f"unknown schedule {name!r} (known: onecycle, piecewise, constant, cyclic, cosine)")
