"""Files: atomic writes (a reader, or an interrupted job, never sees a half-written file),
reads that turn a truncated or corrupt file into one clear error, and folder locks.

* :func:`atomic_write` writes to ``.<name>.<random>.tmp`` beside the target and renames it
  over the target; the temporary is removed on any error or interruption, the result gets
  the user's umask, and a full disk is one :class:`DiskFullError` naming the file.
* :func:`read_json` and :func:`torch_load` raise :class:`CorruptFileError` (the path and
  "remove it and rerun") instead of a library traceback.
* :func:`locked` holds an exclusive ``flock`` on a folder (or on one output's files in it)
  while a job writes there; a second writer is refused at once with the holder's pid, and
  only the holder removes stale temporaries, so a live writer's are never deleted.
"""
from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import CorruptFileError, DiskFullError, LockedError


def _umask() -> int:
    try:   # Linux: read it without changing it (thread-safe)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0)   # elsewhere: set and restore
        os.umask(mask)
        return mask


@contextmanager
def _disk_full_is_one_error(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"no space left on device writing {path}: free space and rerun") from None
        raise


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result over ``path`` in one rename."""
    path = Path(path)
    with _disk_full_is_one_error(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, 0o666 & ~_umask())   # mkstemp creates 0600; results follow the umask
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
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:   # JSONDecodeError, UnicodeDecodeError
        raise CorruptFileError(f"{path} is not valid JSON ({e}): it is truncated or corrupt; "
                               f"remove it and rerun") from None


def torch_save(path: str | Path, obj: Any) -> Path:
    import torch

    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:   # through a Python file, so a full disk is an OSError
            torch.save(obj, f)

    return atomic_write(path, _w)


def torch_load(path: str | Path, **kwargs: Any) -> Any:
    """``torch.load(path, **kwargs)``; a file torch cannot read is one CorruptFileError."""
    import torch

    try:
        return torch.load(path, **kwargs)
    except (FileNotFoundError, MemoryError):
        raise
    except Exception as e:   # truncated zip, EOFError, UnpicklingError, …
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise CorruptFileError(f"{path} cannot be read ({type(e).__name__}{': ' + first if first else ''}): "
                               f"it is truncated or corrupt; remove it and rerun") from None


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def locked(directory: str | Path, name: str | None = None, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (or, with ``name``, on its files ``name.*``)
    while writing there: ``flock`` on ``.lock`` (``.<name>.lock``) inside it, released when
    the block ends or the process dies. Another holder makes this wait up to ``wait``
    seconds, then raise :class:`LockedError` naming the folder and the holder's pid.
    On entry, the stale temporaries the lock covers (``.*.tmp``, ``.<name>.*.tmp``: those of
    a killed writer) are removed; only the holder removes them, so no live writer's are."""
    directory = Path(directory)
    what = f"{directory}" + (f" ({name}.*)" if name else "")
    with _disk_full_is_one_error(directory / ".lock"):
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / (f".{name}.lock" if name else ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    raise LockedError(f"{what} is being written by another process (pid {holder}): "
                                      f"wait for it to finish (or stop it), then rerun") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        for stale in directory.glob(f".{glob.escape(name)}.*.tmp" if name else ".*.tmp"):
            stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)
