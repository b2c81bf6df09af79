"""Device choice, bf16 autocast and channels_last, in one place."""
from __future__ import annotations

import contextlib

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


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
