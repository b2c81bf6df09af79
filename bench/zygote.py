"""A fork server for the workflow's jobs: torch imported once, each job a forked child.

Importing torch is about 2.3 s of every job here, two thirds of a smoke job's CPU. While a
local Snakemake run executes (its ``onstart`` handler starts one, ``onsuccess``/``onerror``
stop it), a zygote process imports torch and the package's training and evaluation modules
once, computes nothing, and listens on a Unix socket named by ``BENCH_ZYGOTE``. ``python -m
bench ...`` (the jobs' command) connects before importing anything heavy and hands over its
arguments, working directory, environment and standard streams (file descriptors); the zygote
forks, and the child runs ``bench.cli.main`` exactly as the job's own process would, then
exits with its status, which the client returns as its own. Signals the client gets (SIGTERM,
SIGINT, SIGHUP) are forwarded to the child; if the client dies, the child gets SIGTERM (and
cleans up as an interrupted job does); if the zygote dies, its children are killed.

Transparent by construction: no socket, no answer, a zygote importing another checkout's
source or another python, or any failure to hand over, and the client runs the job itself. Cluster jobs never
see the socket and run as before. ``--config zygote=0`` turns it off.
"""
from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = str(Path(__file__).resolve().parent)   # the bench package a process runs
PRELOAD = ("torch", "bench.cli", "bench.train", "bench.evaluate", "pyautoattack")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_HEADER = struct.Struct("!I")
_CODE = struct.Struct("!i")


def _quietly():
    return contextlib.suppress(OSError, KeyError, ValueError)


# ---- the client: `python -m bench` ---------------------------------------------------------

def delegate(argv: list[str]) -> int | None:
    """Run ``bench argv`` in a child of the zygote named by ``BENCH_ZYGOTE``; its exit status,
    or None when there is no zygote to take it (the caller then runs it itself)."""
    path = os.environ.get("BENCH_ZYGOTE")
    if not path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        body = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                           "source": SOURCE, "python": sys.executable}).encode()
        socket.send_fds(conn, [_HEADER.pack(len(body))], [0, 1, 2])
        conn.sendall(body)
        if _recv(conn, 1) != b"+":   # refused: another checkout's source
            conn.close()
            return None
    except OSError:
        conn.close()
        return None
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, frame: conn.send(_CODE.pack(signum)))
    try:
        return _CODE.unpack(_recv(conn, _CODE.size))[0]
    except (OSError, struct.error):
        print("bench: error: the job's forked process ended without an exit status (its zygote died)",
              file=sys.stderr)
        return 1


def _recv(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


# ---- the server ---------------------------------------------------------------------------

def supported() -> bool:
    """Linux (pidfds, PR_SET_PDEATHSIG); elsewhere every job starts its own python."""
    return sys.platform.startswith("linux") and hasattr(os, "pidfd_open")


def start(basedir: str) -> tuple[subprocess.Popen, str]:
    """Start a zygote for this process (it exits when this process does); its socket path."""
    path = os.path.join(tempfile.mkdtemp(prefix="bench-zygote-"), "socket")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [basedir, os.environ.get("PYTHONPATH")]))}
    env.pop("BENCH_ZYGOTE", None)
    # in basedir: `python -m` puts the working directory first on the path
    proc = subprocess.Popen([sys.executable, "-m", "bench.zygote", path, str(os.getpid())], env=env, cwd=basedir,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    return proc, path


def stop(proc: subprocess.Popen, path: str) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    with _quietly():
        os.unlink(path)   # the zygote removes it itself, unless it was killed
    with _quietly():
        os.rmdir(os.path.dirname(path))


def serve(path: str, parent: int) -> None:
    """Import, listen on ``path`` until ``parent`` exits or SIGTERM, fork a child per job."""
    import importlib
    import threading

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # forking a process with Python threads is unsafe: serve nobody (native pools that imports
    # start, numpy's OpenBLAS, reset themselves in a forked child, as for torch's fork workers)
    if threading.active_count() != 1:
        print(f"bench.zygote: {threading.active_count()} threads after importing; not serving", file=sys.stderr)
        return
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")
    listener.listen(64)
    os.rename(path + ".new", path)   # clients find it only once it listens
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    children: dict[int, tuple[socket.socket, int]] = {}   # pidfd -> (client connection, pid)
    forked = 0
    try:
        while not stopping and os.getppid() == parent:
            for key, _ in sel.select(timeout=1.0):
                if key.data is None:
                    conn, _ = listener.accept()
                    child = _fork_job(conn, [listener, sel, *children, *(c for c, _ in children.values())])
                    if child is not None:
                        pid, pidfd = child
                        forked += 1
                        children[pidfd] = (conn, pid)
                        sel.register(pidfd, selectors.EVENT_READ, ("exit", pidfd))
                        sel.register(conn, selectors.EVENT_READ, ("client", pidfd))
                elif key.data[0] == "client":   # a forwarded signal, or the client is gone
                    conn, pid = children[key.data[1]]
                    msg = _recv(conn, _CODE.size)
                    with _quietly():
                        os.kill(pid, _CODE.unpack(msg)[0] if len(msg) == _CODE.size else signal.SIGTERM)
                    if len(msg) < _CODE.size:
                        sel.unregister(conn)
                else:                            # a child exited: its status to its client
                    pidfd = key.data[1]
                    conn, pid = children.pop(pidfd)
                    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                    with _quietly():
                        conn.sendall(_CODE.pack(status if status >= 0 else 128 - status))
                    for obj in (pidfd, conn):
                        with _quietly():
                            sel.unregister(obj)
                    conn.close()
                    os.close(pidfd)
    finally:
        listener.close()
        with _quietly():
            os.unlink(path)
        if forked:
            print(f"bench.zygote: {forked} job(s) forked from one import of torch", file=sys.stderr, flush=True)


def _fork_job(conn: socket.socket, inherited: list) -> tuple[int, int] | None:
    """Read a job's request from ``conn`` and fork it; (pid, pidfd), or None if refused.
    ``inherited``: the zygote's sockets, selector and pidfds (the child closes them)."""
    fds: list[int] = []
    try:
        conn.settimeout(10)
        head, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
        request = json.loads(_recv(conn, _HEADER.unpack(head)[0]))
        conn.settimeout(None)
        if (request["source"], request["python"]) != (SOURCE, sys.executable) or len(fds) != 3:
            raise ValueError("another checkout or interpreter")
        pid = os.fork()
    except (OSError, ValueError, struct.error, KeyError):
        for fd in fds:
            os.close(fd)
        with _quietly():
            conn.sendall(b"-")
        conn.close()
        return None
    if pid == 0:
        _run_child(request, fds, [conn, *inherited])
    for fd in fds:
        os.close(fd)
    conn.sendall(b"+")
    return pid, os.pidfd_open(pid)


def _run_child(request: dict, fds: list[int], inherited: list) -> None:
    """In the forked child: become the job's process and run it; never returns."""
    code = 1
    try:
        _die_with_parent()
        for sig in (*FORWARDED, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for obj in inherited:
            with _quietly():
                obj.close() if hasattr(obj, "close") else os.close(obj)
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
            os.close(fd)
        # the job's own streams, for the rest of this process's life
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        line = os.isatty(1) or bool(request["env"].get("PYTHONUNBUFFERED"))   # as a fresh python would
        sys.stdout = open(1, "w", buffering=1 if line else -1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["bench", *request["argv"]]
        from bench.cli import main

        main(request["argv"])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - what an uncaught exception prints, status 1
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with _quietly():
                stream.flush()
        os._exit(code)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the zygote ends (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
