"""Device choice, bf16 autocast, channels_last and compilation, in one place.

``compile`` (a run's ``precision.compile``, from ``--config compile=…``): ``none`` (eager),
``default`` (torch.compile with inductor), ``reduce-overhead`` (also CUDA graphs on a GPU) or
``max-autotune``; ``auto`` is ``max-autotune`` on CUDA and ``default`` elsewhere. The model's
forward (and so every attack step and training step through it, forward and backward) is
compiled; shapes are static, and the last, smaller batch of an epoch is one more compiled graph.
The compiled module shares the eager module's parameters, so checkpoints are written from the
eager one and read by either. Compilation is part of a run's id, like amp.
"""
from __future__ import annotations

import contextlib
import sys

import torch

from .errors import SpecError


def device() -> torch.device:
    """``BENCH_DEVICE`` if set; else a GPU of this job's own (a lease, bench/devices.py, when the
    machine has several), else the CPU."""
    from .devices import choose

    return torch.device(choose(torch.cuda.device_count() if torch.cuda.is_available() else 0))


def autocast(dev: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "bf16":
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
    raise SpecError(f"precision.amp must be 'none' or 'bf16', got {amp!r}")


def prepare(model: torch.nn.Module, dev: torch.device, channels_last: bool) -> torch.nn.Module:
    model = model.to(dev)
    return model.to(memory_format=torch.channels_last) if channels_last else model


COMPILE_MODES = ("none", "auto", "default", "reduce-overhead", "max-autotune")


def compile_mode(requested: str, dev: torch.device) -> str | None:
    """The torch.compile mode for ``requested`` on ``dev`` (None: eager)."""
    if requested not in COMPILE_MODES:
        raise SpecError(f"precision.compile must be one of {COMPILE_MODES}, got {requested!r}")
    if requested == "none":
        return None
    if requested == "auto":
        return "max-autotune" if dev.type == "cuda" else "default"
    return requested


def compiled(model: torch.nn.Module, requested: str, dev: torch.device) -> torch.nn.Module:
    """``model`` compiled as ``requested`` (the eager model itself for "none")."""
    mode = compile_mode(requested, dev)
    if mode is None:
        return model
    import torch._dynamo

    # train/eval modes, inputs with and without gradients and the last partial batch each
    # compile a graph of their own: allow them all rather than falling back to eager
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(model, mode=mode, dynamic=False)


def varying_batch(x: torch.Tensor) -> torch.Tensor:
    """``x``, its batch dimension marked dynamic for a compiled model: the subsets an
    early-stopped attack keeps iterating shrink at every step (and PGD's later restarts attack
    the examples still robust), and a static-shape graph per size would recompile at every
    step (up to dynamo's cache limit, then run eager). Without
    ``torch._dynamo`` imported no model is compiled, and ``x`` is returned as it is."""
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is not None and x.shape[0] > 1:
        dynamo.mark_dynamic(x, 0)
    return x


class Autocast(torch.nn.Module):
    """A model whose forward runs under bf16 autocast and returns float32 logits, so that any
    attack, ours or a library's, evaluates it in the precision the run was trained in."""

    def __init__(self, model: torch.nn.Module, dev: torch.device, amp: str):
        super().__init__()
        self.model, self.dev, self.amp = model, dev, amp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.dev, self.amp):
            return self.model(x).float()


def for_evaluation(model: torch.nn.Module, dev: torch.device, prec: dict) -> torch.nn.Module:
    """The model as a run's precision options say (channels_last, compile, bf16 autocast)."""
    model = compiled(prepare(model, dev, bool(prec.get("channels_last", False))), prec.get("compile", "none"), dev)
    amp = prec.get("amp", "none")
    return model if amp == "none" else Autocast(model, dev, amp).eval()


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
