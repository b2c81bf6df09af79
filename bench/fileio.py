"""Atomic file writes: a reader (or an interrupted job) never sees a half-written file."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result over ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, _w)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def torch_save(path: str | Path, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def torch_load(path: str | Path, **kwargs: Any) -> Any:
    """``torch.load`` of a file this suite wrote; an unreadable (truncated, foreign) file is
    one clear error naming it."""
    import torch

    from .errors import BenchError

    try:
        return torch.load(path, **kwargs)
    except FileNotFoundError:
        raise BenchError(f"{path} is missing; rerun the job that writes it") from None
    except Exception as e:
        raise BenchError(f"{path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
                         f"remove it and rerun") from None


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
