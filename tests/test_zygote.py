"""bench/zygote.py: jobs forked from one process that imported torch are the jobs run alone."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

CHECKOUT = str(Path(__import__("bench").__file__).resolve().parents[1])   # where this process's bench is
pytestmark = pytest.mark.skipif(not __import__("bench.zygote").zygote.supported(), reason="the zygote needs Linux")


@pytest.fixture(scope="module")
def zygote():
    from bench import zygote as z

    proc, path = z.start(CHECKOUT)   # a zygote refuses clients of another checkout
    deadline = time.time() + 120
    while not os.path.exists(path):
        assert proc.poll() is None and time.time() < deadline, "the zygote did not start"
        time.sleep(0.05)
    yield proc, path
    z.stop(proc, path)
    assert proc.poll() is not None and not os.path.exists(os.path.dirname(path))


def _run(method: str):
    """A smoke run of HAT's plan training with ``method``, and the plan."""
    from bench.plan import Plan

    plan = Plan("smoke", papers=["hat"])
    return plan, next(r for r in plan.runs.values() if r.config["method"]["name"] == method)


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _outputs(run_id: str, protocol: str) -> tuple[dict, dict, dict]:
    from bench import layout

    run = layout.run_dir("smoke", run_id)
    metrics = json.loads((run / "metrics.json").read_text())
    weights = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    result = json.loads(layout.eval_path("smoke", run_id, protocol).read_text())
    return _timeless(metrics), weights, {k: result[k] for k in ("clean", "robust", "n", "checkpoint")}


def _tensors(obj, prefix="") -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    return {k: t for key, v in items for k, t in _tensors(v, f"{prefix}/{key}").items()}


def _timeless(obj):
    """A result without its timings (the only thing a forked job may do differently)."""
    if isinstance(obj, dict):
        return {k: _timeless(v) for k, v in obj.items() if k not in {"seconds", "images_per_s"}}
    return [_timeless(v) for v in obj] if isinstance(obj, list) else obj


def test_a_forked_job_is_the_job_run_alone(zygote, tmp_path, monkeypatch, capfd):
    from bench import zygote as z

    plan, run = _run("pgd_at")
    protocol = next(e.protocol_id for e in plan.evals.values() if e.run_id == run.id)
    outs = []
    for how in ("forked", "alone"):
        monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / how))
        jobs = (["train", "--scale", "smoke", "--quiet", run.id], ["evaluate", "--scale", "smoke", run.id, protocol])
        for argv in jobs:
            if how == "forked":
                monkeypatch.setenv("BENCH_ZYGOTE", zygote[1])
                assert z.delegate(argv) == 0, capfd.readouterr().err[-3000:]   # None: not forked
            else:
                monkeypatch.delenv("BENCH_ZYGOTE", raising=False)
                subprocess.run([sys.executable, "-m", "bench", *argv], check=True, capture_output=True)
        outs.append(_outputs(run.id, protocol))
    (m1, w1, r1), (m2, w2, r2) = outs
    assert m1 == m2 and r1 == r2
    t1, t2 = _tensors(w1), _tensors(w2)
    assert len(t1) > 10 and t1.keys() == t2.keys() and all(torch.equal(t1[k], t2[k]) for k in t1)


def test_exit_status_and_errors_pass_through(zygote, monkeypatch, capfd):
    from bench import zygote as z

    monkeypatch.setenv("BENCH_ZYGOTE", zygote[1])
    assert z.delegate(["train", "--scale", "smoke", "nosuchrun"]) == 2
    assert "run 'nosuchrun' is not in the smoke plan" in capfd.readouterr().err
    assert z.delegate(["--version-of-nothing"]) == 2   # argparse's usage error, exit status 2


def test_another_checkout_or_no_zygote_runs_the_job_itself(zygote, monkeypatch, tmp_path):
    from bench import zygote as z

    monkeypatch.setenv("BENCH_ZYGOTE", zygote[1])
    monkeypatch.setattr(z, "SOURCE", str(tmp_path / "another" / "bench"))
    assert z.delegate(["targets"]) is None
    monkeypatch.setenv("BENCH_ZYGOTE", str(tmp_path / "no-such-socket"))
    assert z.delegate(["targets"]) is None


def test_signals_reach_the_forked_job_and_a_dead_client_stops_it(zygote, tmp_path):
    from bench import layout

    _, run = _run("trades")
    run_dir = layout.run_dir("smoke", run.id)
    env = {**os.environ, "BENCH_ZYGOTE": zygote[1], "PYTHONPATH": CHECKOUT}
    for sig in (signal.SIGINT, signal.SIGKILL):
        proc = subprocess.Popen([sys.executable, "-m", "bench", "train", "--scale", "smoke", "--quiet", run.id],
                                stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 120
        while not (run_dir / "config.json").exists() and time.time() < deadline:
            time.sleep(0.01)
        assert _children(zygote[0].pid), "the job was not forked from the zygote"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        if sig == signal.SIGINT:   # forwarded: the job's own Ctrl-C handling, status 130
            assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err[-2000:]
        deadline = time.time() + 60   # SIGKILLed client: the zygote stops its job (SIGTERM)
        while _children(zygote[0].pid) and time.time() < deadline:
            time.sleep(0.05)
        assert not _children(zygote[0].pid)
        assert not (run_dir / "run.json").exists() and not list(run_dir.glob(".*.tmp"))
        for f in run_dir.glob("config.json"):
            f.unlink()
