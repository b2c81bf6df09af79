"""Provenance recorded beside every result: code, environment, time."""
from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

PACKAGE = Path(__file__).parent


@lru_cache(maxsize=None)
def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE, capture_output=True,
                             text=True, timeout=10)
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", str(PACKAGE)], cwd=PACKAGE,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def source_hash(paths: Iterable[Path]) -> str:
    """Hash of source files (contents and package-relative names), order-independent."""
    h = hashlib.sha256()
    files: set[Path] = set()
    for p in paths:
        files.update(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    hash_files(h, files, lambda f: str(f.relative_to(PACKAGE)).encode())
    return h.hexdigest()[:12]


def hash_files(h, files: Iterable[Path], name: Callable[[Path], bytes]) -> None:
    """Feed ``h`` each file's ``name(f)`` and contents, in sorted path order (the one file-hashing
    rule of run ids and of the plan cache)."""
    for f in sorted(set(files)):
        h.update(name(f))
        h.update(f.read_bytes())


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@lru_cache(maxsize=None)
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_label(device: str) -> str:
    """A device as the suite names it (run.json, ``bench speed``, ``bench plan --cost``): the GPU's
    model name for "cuda[:i]", "CPU <model name>" otherwise."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU {cpu_name()}"


def environment() -> dict[str, str]:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "host": platform.node(), "git_commit": git_commit(), "time": now(), "cpu": cpu_name()}
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name(0)
    return env
