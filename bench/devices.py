"""Which device a job runs on, and a GPU lease so that the jobs of one machine with several
GPUs each get a GPU of their own without the user setting anything.

Snakemake does not assign GPU ids to local jobs. A job that is not told its device
(``BENCH_DEVICE`` unset) on a machine with n > 1 CUDA devices takes a lease: an exclusive
``flock`` on ``<lease dir>/gpu<i>.lock`` for the first free i, held until the process exits
(the kernel releases it even after ``kill -9``). If all n are leased the job waits for one.
Run Snakemake with ``--resources gpu=<n>`` (profiles/default sets 1) so that no more GPU jobs
start than there are GPUs. The lease directory is ``BENCH_LEASES`` (default: a per-user folder
in the system's temporary directory), shared by every job of the machine.
"""
from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from pathlib import Path

_HELD: list = []   # open lock files of this process's lease (kept open: the lease lasts as long as the process)


def lease_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"bench-gpu-leases-{os.getuid()}"
    return Path(os.environ.get("BENCH_LEASES", default))


def lease(n_devices: int, directory: Path | None = None, poll: float = 1.0, timeout: float | None = None) -> int:
    """Lease one of ``n_devices`` devices for the rest of this process: the index of the
    first one no other process holds (waiting for one, up to ``timeout`` seconds)."""
    if _HELD:
        return _HELD[0][0]
    directory = lease_dir() if directory is None else Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    start, told = time.monotonic(), False
    while True:
        for i in range(n_devices):
            f = open(directory / f"gpu{i}.lock", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            _HELD.append((i, f))
            return i
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"all {n_devices} GPUs are leased by other jobs ({directory})")
        if not told:
            print(f"bench: all {n_devices} GPUs are leased by other jobs; waiting for one (run Snakemake with "
                  f"--resources gpu={n_devices})", file=sys.stderr)
            told = True
        time.sleep(poll)


def release() -> None:
    """Give the lease back (tests; a job simply exits)."""
    while _HELD:
        _, f = _HELD.pop()
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def choose(cuda_count: int) -> str:
    """The device name for this job: ``BENCH_DEVICE`` if set; else ``cuda:<leased i>`` with
    several GPUs, ``cuda`` with one, ``cpu`` with none."""
    name = os.environ.get("BENCH_DEVICE")
    if name:
        return name
    if cuda_count > 1:
        return f"cuda:{lease(cuda_count)}"
    return "cuda" if cuda_count == 1 else "cpu"
