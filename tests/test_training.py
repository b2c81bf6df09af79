"""Training loop: resume after a kill, schedules, checkpoint selection, precision."""
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

from bench.optim import build_optimizer, build_schedule
from bench.train import selection_epochs

from conftest import SHARED_DATA, tiny_model

HERE = Path(__file__).parent

CONFIG = {
    "dataset": "cifar10", "data": {"source": "synthetic", "synthetic_size": [768, 64], "n_train": None},
    "model": {"name": "resnet", "blocks": [1, 1, 1, 1], "width": 8},
    "method": {"name": "trades", "beta": 6.0},
    "attack": {"norm": "linf", "eps": "8/255", "step_size": "2/255", "steps": 3},
    "epochs": 4, "batch_size": 64,
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
    "schedule": {"name": "onecycle", "pct_start": 0.25},
    "selection": {"metric": "robust", "every": 1, "last": 0, "n_test": 32,
                  "attack": {"name": "pgd", "steps": 2}},
    "precision": {"amp": "none", "channels_last": False}, "seed": 1,
}


def start(cfg_path: Path, run_dir: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    return subprocess.Popen([sys.executable, str(HERE / "run_training.py"), str(cfg_path), str(run_dir)],
                            stderr=open(log, "a"), env=env)


def test_resume_after_kill_reaches_the_same_weights(tmp_path):
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(CONFIG))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert start(cfg_path, straight, tmp_path / "a.log").wait(300) == 0

    proc = start(cfg_path, resumed, tmp_path / "b.log")
    deadline = time.time() + 300
    while not (resumed / "state.pt").exists() and time.time() < deadline:   # state.pt: an epoch's last write
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = torch.load(resumed / "state.pt", weights_only=False)["epoch"]   # what is visible is complete
    assert done < CONFIG["epochs"], "the kill came too late to test resuming"
    assert not (resumed / "run.json").exists()
    torch.load(resumed / "last.pt", weights_only=True)
    assert start(cfg_path, resumed, tmp_path / "b.log").wait(300) == 0
    assert not list(resumed.glob(".*.tmp")), "temporary files of the killed job were left behind"
    assert f"resuming after epoch {done}/" in (tmp_path / "b.log").read_text()

    a = torch.load(straight / "last.pt", weights_only=True)["model"]
    b = torch.load(resumed / "last.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ra, rb = (json.loads((d / "run.json").read_text()) for d in (straight, resumed))
    assert ra["best"] == rb["best"]
    assert rb["throughput"]["images_per_s"] > 0


def test_run_records_provenance_and_metrics(tmp_path):
    from bench.train import train

    cfg = {**CONFIG, "epochs": 2, "data": {"source": "synthetic", "synthetic_size": [128, 64]}}
    summary = train("prov", cfg, tmp_path, progress=False)
    assert summary["dataset"]["source"] == "synthetic" and summary["dataset"]["exact"] is False
    assert summary["config"]["method"]["attack"]["random_start"] == "normal"   # resolved defaults logged
    assert {"torch", "git_commit", "python"} <= set(summary["environment"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all("select_robust" in m and "images_per_s" in m for m in metrics)
    assert (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()


def test_selection_epochs_follow_hat_code():
    assert selection_epochs({"every": 30, "last": 5}, 50) == {30, 46, 47, 48, 49, 50}
    assert selection_epochs({"every": 30, "last": 5}, 15) == {11, 12, 13, 14, 15}
    assert selection_epochs({"every": 1}, 3) == {1, 2, 3}


def test_onecycle_matches_hat_recipe():
    model = tiny_model()
    opt = build_optimizer(model.parameters(), {"name": "sgd", "lr": 0.21, "momentum": 0.9, "nesterov": True})
    sched = build_schedule(opt, {"name": "onecycle", "pct_start": 0.25}, epochs=50, steps_per_epoch=391)
    lrs = []
    for _ in range(50 * 391):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[0] == pytest.approx(0.21 / 25)
    assert lrs[peak] == pytest.approx(0.21) and abs(peak - 0.25 * 50 * 391) <= 1
    assert lrs[-1] < 1e-5
    assert opt.param_groups[0]["momentum"] == 0.9   # not cycled (paper: momentum 0.9)


@pytest.mark.parametrize("cycle", [False, True])
def test_onecycle_equals_torch_onecyclelr(cycle):
    ours = build_optimizer(tiny_model().parameters(), {"name": "sgd", "lr": 0.21, "momentum": 0.9})
    ref = build_optimizer(tiny_model().parameters(), {"name": "sgd", "lr": 0.21, "momentum": 0.9})
    s1 = build_schedule(ours, {"name": "onecycle", "pct_start": 0.25, "cycle_momentum": cycle}, 7, 13)
    s2 = torch.optim.lr_scheduler.OneCycleLR(ref, max_lr=0.21, total_steps=7 * 13, pct_start=0.25,
                                             cycle_momentum=cycle)
    for _ in range(7 * 13):
        for key in ("lr", "momentum"):
            assert ours.param_groups[0][key] == pytest.approx(ref.param_groups[0][key], abs=1e-12)
        ours.step(), ref.step(), s1.step(), s2.step()


def train_side_by_side(ours, ref):
    """Train two (model, optimiser, schedule) triples on the same 12 batches, swapping their
    optimiser states at the 7th (each continues from the other's state_dict); the weights must
    be identical after every step."""
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.rand(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen))
               for _ in range(12)]
    for i, (x, y) in enumerate(batches):
        if i == 6:
            a, b = ours[1].state_dict(), ref[1].state_dict()
            ours[1].load_state_dict(b), ref[1].load_state_dict(a)
        for model, opt, sched in (ours, ref):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step(), sched.step()
        for p, q in zip(ours[0].parameters(), ref[0].parameters()):
            assert torch.equal(p, q), f"step {i}"


@pytest.mark.parametrize("nesterov, weight_decay", [(False, 5e-4), (True, 2e-4), (False, 0.0)])
def test_sgd_is_torch_sgd_bit_for_bit_and_resumes_in_its_format(nesterov, weight_decay):
    """bench.optim.SGD against torch.optim.SGD on the same model, batches and schedule (one-cycle
    with cycling momentum): identical weights after every step; its state_dict loads into
    torch.optim.SGD (and back) mid-run and the runs stay identical."""
    def setup(cls):
        torch.manual_seed(0)
        model = tiny_model()
        opt = cls(model.parameters(), lr=0.2, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay)
        return model, opt, build_schedule(opt, {"name": "onecycle", "cycle_momentum": True}, 3, 4)

    from bench.optim import SGD

    ours, ref = setup(SGD), setup(torch.optim.SGD)
    train_side_by_side(ours, ref)
    assert ours[1].param_groups[0]["momentum"] == ref[1].param_groups[0]["momentum"]


@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
def test_adam_is_torch_adam_bit_for_bit_and_resumes_in_its_format(weight_decay):
    """bench.optim.Adam against torch.optim.Adam (BAT's MNIST recipe), as the SGD test: identical
    weights after every step, state_dicts exchanged both ways mid-run, the step counter kept
    where torch keeps it."""
    def setup(cls):
        torch.manual_seed(0)
        model = tiny_model()
        opt = cls(model.parameters(), lr=1e-3, weight_decay=weight_decay)
        return model, opt, build_schedule(opt, {"name": "piecewise", "milestones": [1, 2]}, 3, 4)

    from bench.optim import Adam

    ours, ref = setup(Adam), setup(torch.optim.Adam)
    assert ours[1].defaults == {**ref[1].defaults, "weight_decay": weight_decay}
    train_side_by_side(ours, ref)
    for s, t in zip(ours[1].state_dict()["state"].values(), ref[1].state_dict()["state"].values()):
        assert s.keys() == t.keys() and s["step"].device == t["step"].device and s["step"].dtype == t["step"].dtype
        assert all(torch.equal(s[k], t[k]) for k in s)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_does_not_import_dynamo(optimizer):
    """A job that trains with SGD or Adam (every eager smoke job) must not pay for importing torch._dynamo."""
    code = ("import sys, torch; from bench.optim import build_optimizer, build_schedule; "
            f"m = torch.nn.Linear(3, 2); o = build_optimizer(m.parameters(), {{'name': '{optimizer}', 'lr': 0.1}}); "
            "s = build_schedule(o, {'name': 'piecewise', 'milestones': [1]}, 2, 3); "
            "m(torch.ones(1, 3)).sum().backward(); o.step(); s.step(); o.zero_grad(); "
            "o.load_state_dict(o.state_dict()); s.load_state_dict(s.state_dict()); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_piecewise_schedule_decays_at_milestones():
    model = tiny_model()
    opt = build_optimizer(model.parameters(), {"name": "sgd", "lr": 0.1})
    sched = build_schedule(opt, {"name": "piecewise", "milestones": [2, 3], "gamma": 0.1}, 4, 10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[19] == pytest.approx(0.1) and lrs[20] == pytest.approx(0.01) and lrs[30] == pytest.approx(0.001)


def test_bf16_autocast_and_channels_last_agree_with_fp32_on_cpu():
    from bench.methods import METHODS
    from bench.precision import autocast

    torch.manual_seed(0)
    model = tiny_model().eval()
    x = torch.rand(16, 3, 32, 32)
    y = torch.randint(0, 10, (16,))
    ref = model(x)
    cl = tiny_model().eval()
    cl.load_state_dict(model.state_dict())
    cl = cl.to(memory_format=torch.channels_last)
    assert torch.allclose(cl(x.contiguous(memory_format=torch.channels_last)), ref, atol=1e-5)
    with autocast(torch.device("cpu"), "bf16"):
        low = model(x)
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), ref, atol=0.05 * ref.abs().max().item())
    model.train()
    losses = []
    for amp in ("none", "bf16"):
        method = METHODS.get("trades")(model, {"steps": 2})
        with autocast(torch.device("cpu"), amp):
            loss, _ = method.loss(x, y, torch.Generator().manual_seed(0))
        assert loss.dtype == torch.float32
        losses.append(loss.item())
    assert losses[1] == pytest.approx(losses[0], rel=0.05)


@pytest.mark.skipif(not (SHARED_DATA / "MNIST").exists(), reason="../shared/data not present")
def test_training_and_evaluation_on_real_data(tmp_path, monkeypatch):
    """A planned run on real data (exact MNIST), trained and evaluated like a mini-scale job."""
    from bench.evaluate import run_protocol
    from bench.train import train

    monkeypatch.setenv("BENCH_DATA", str(SHARED_DATA))
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path))
    cfg = {**CONFIG, "dataset": "mnist", "epochs": 1, "data": {"source": "real", "n_train": 256}}
    cfg["model"] = {"name": "resnet", "blocks": [1, 1, 1, 1], "width": 4}
    summary = train("mnist-run", cfg, tmp_path / "mini" / "runs" / "mnist-run", progress=False)
    assert summary["dataset"]["exact"] is True and summary["dataset"]["n_train"] == 256
    protocol = {"attack": {"name": "pgd", "steps": 2}, "n_test": 64, "checkpoint": "best"}
    out = tmp_path / "eval.json"
    res = run_protocol("mini", "mnist-run", cfg, "pgd", protocol, out, progress=False)
    assert res["n"] == 64 and res["dataset"]["exact"] is True and out.exists()
