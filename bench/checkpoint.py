"""Model checkpoints: weights plus what is needed to rebuild the network.

Every checkpoint a run writes is recorded with its sha256 in the run's ``run.json``
(``checkpoints``); :func:`load_run` reads a run's checkpoint only if its bytes still have
that digest and its weights are finite, so a replaced, damaged or diverged checkpoint is
never evaluated.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from .errors import BenchError
from .fileio import atomic_write, file_digest, read_json, torch_load
from .models import build


def pack(model: torch.nn.Module, model_cfg: dict, num_classes: int, in_channels: int, **meta: Any) -> dict[str, Any]:
    """A checkpoint of the model's current weights (copied to the CPU, not the live tensors)."""
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return {"model": state, "model_cfg": model_cfg, "num_classes": num_classes, "in_channels": in_channels, **meta}


def write(path: Path, ckpt: dict[str, Any]) -> str:
    """Write a checkpoint atomically; returns the sha256 of the bytes written."""
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    data = buf.getvalue()

    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:   # through a Python file, so a full disk is an OSError
            f.write(data)

    atomic_write(path, _w)
    return hashlib.sha256(data).hexdigest()


def save(path: Path, model: torch.nn.Module, model_cfg: dict, num_classes: int, in_channels: int,
         **meta: Any) -> str:
    """Write the model's checkpoint atomically; returns its sha256."""
    return write(path, pack(model, model_cfg, num_classes, in_channels, **meta))


def cpu_copy(obj: Any) -> Any:
    """``obj`` with every tensor copied to the CPU (containers rebuilt): a snapshot that the
    training going on cannot change while it is being written."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


class BackgroundWriter:
    """Writes files in one background thread, in the order they were submitted, so that
    checkpoint writes are off the training's critical path while the files keep the order a
    resume relies on (state.pt, the last file of an epoch, is complete only after the
    checkpoints and metrics of that epoch). Every file is still written to a temporary name
    and renamed. An error in the thread is raised in the training at its next submit or at
    :meth:`flush`; leaving the ``with`` block waits for every pending write."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending: list = []

    def submit(self, fn, *args):
        self._check()
        future = self._pool.submit(fn, *args)
        self._pending.append(future)
        return future

    def _check(self) -> None:
        for f in [f for f in self._pending if f.done()]:
            self._pending.remove(f)
            f.result()   # re-raises the thread's error here

    def flush(self) -> None:
        while self._pending:
            self._pending.pop(0).result()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self._pool.shutdown(wait=True)


def resolved(digests: dict[str, Any]) -> dict[str, str]:
    """Digests some of which are still being written (futures) as plain strings."""
    return {k: v.result() if hasattr(v, "result") else v for k, v in digests.items()}


def check_finite(state: dict[str, torch.Tensor], where: Path) -> None:
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise BenchError(f"{where} holds non-finite weights ({', '.join(bad[:3])}{', …' if len(bad) > 3 else ''}): "
                         f"the run diverged; remove its folder and rerun (or change its recipe)")


def load(path: Path, device: torch.device, sha256: str | None = None) -> tuple[torch.nn.Module, dict]:
    """The model in ``path`` (eval mode, on ``device``) and the checkpoint dict; with
    ``sha256``, only if the file still has that digest."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path} is missing: rerun the job that writes it (snakemake rebuilds it)")
    if sha256 is not None and file_digest(path) != sha256:
        raise BenchError(f"{path} does not match the sha256 its run recorded: it was replaced or damaged; "
                         f"remove {path.parent} and rerun")
    ckpt = torch_load(path, map_location="cpu", weights_only=True)   # unreadable: one error naming the file
    check_finite(ckpt["model"], path)
    model = build(ckpt["model_cfg"], ckpt["num_classes"], ckpt["in_channels"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def recorded(run_dir: Path, which: str) -> str:
    """The sha256 that ``run_dir``'s run.json records for checkpoint ``which`` (best, last, epoch<k>)."""
    info = read_json(Path(run_dir) / "run.json")
    digest = (info.get("checkpoints") or {}).get(which)
    if digest is None:
        raise BenchError(f"{run_dir}/run.json records no checkpoint {which!r} (written by older code?); "
                         f"remove {run_dir} and rerun")
    return digest


def load_run(run_dir: Path, which: str, device: torch.device) -> tuple[torch.nn.Module, dict, str]:
    """A finished run's checkpoint ``which``, verified against its run.json; also its sha256."""
    digest = recorded(run_dir, which)
    model, ckpt = load(Path(run_dir) / f"{which}.pt", device, digest)
    return model, ckpt, digest
