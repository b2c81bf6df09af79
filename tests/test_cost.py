"""``bench plan --cost`` (bench/cost.py): FLOPs against a hand count, the throughput's source on
this device, and an estimate for every paper-scale target."""
from __future__ import annotations

import json

import pytest
import torch

from bench import cost
from bench.plan import Plan
from bench.plan_model import canonical
from bench.provenance import cpu_name

# TRADES' MNIST CNN at 28×28, multiply-adds × 2: conv 1→20 5×5 on 24×24, conv 20→50 5×5 on 8×8,
# fc 800→500, fc 500→10
MNIST_CNN_FLOPS = 2 * (1 * 20 * 25 * 24 * 24 + 20 * 50 * 25 * 8 * 8 + 800 * 500 + 500 * 10)


def test_forward_flops_match_a_hand_count():
    model = canonical({"name": "mnist_cnn"})
    assert cost.forward_flops(model, 10, (1, 28, 28)) == MNIST_CNN_FLOPS
    cost.forward_flops.cache_clear()
    assert cost.forward_flops(model, 10, (1, 28, 28)) == MNIST_CNN_FLOPS   # from the disk cache


def test_attack_passes():
    assert cost.attack_passes(None) == 0 and cost.attack_passes({"name": "none"}) == 0
    assert cost.attack_passes({"name": "fgsm"}) == 2
    assert cost.attack_passes({"name": "pgd", "steps": 20, "restarts": 5}) == 200
    # APGD-CE 100 iterations on every image; APGD-T (9 targets), FAB-T (9 targets, 3 passes) and
    # 5,000 Square queries on the half still robust
    assert cost.attack_passes({"name": "autoattack"}) == 200 + 0.5 * (1800 + 2700 + 5000)
    # the mini scale's reduced version: APGD-CE and APGD-T at 25 iterations
    assert cost.attack_passes({"name": "autoattack", "attacks": ["apgd-ce", "apgd-t"], "n_iter": 25}) == 50 + 225


def _run(root, scale, name, images_per_s, cpu, device="cpu"):
    cfg = {"method": {"name": "pgd_at"}, "attack": {"steps": 10}, "dataset": "mnist",
           "model": {"name": "mnist_cnn"}, "device": device}
    d = root / scale / "runs" / name
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"config": cfg, "throughput": {"images_per_s": images_per_s},
                                            "environment": {"cpu": cpu}}))


def test_throughput_from_this_devices_runs_then_its_speed_result(tmp_path, monkeypatch):
    root = tmp_path / "results"
    rate, source = cost.throughput()
    assert rate == cost.ASSUMED_CPU_FLOPS and source.startswith("assumed") and cpu_name() in source
    assert cost.throughput(device="NVIDIA H100 80GB HBM3")[0] == cost.ASSUMED_FLOPS
    if not torch.cuda.is_available():
        monkeypatch.setenv("BENCH_DEVICE", "cuda")                # a GPU's prediction from a CPU machine
        assert cost.throughput()[0] == cost.ASSUMED_FLOPS
        monkeypatch.setenv("BENCH_DEVICE", "cpu")
    per_image = cost.run_passes({"method": {"name": "pgd_at"}, "attack": {"steps": 10}}) * MNIST_CNN_FLOPS
    assert per_image == (3 + 20) * MNIST_CNN_FLOPS
    _run(root, "mini", "a", 100.0, cpu_name())
    _run(root, "mini", "b", 300.0, cpu_name())
    _run(root, "mini", "c", 200.0, cpu_name())
    _run(root, "smoke", "d", 10.0, cpu_name())
    _run(root, "mini", "e", 1e6, "another CPU")                  # another machine's run: not this device's
    _run(root, "mini", "f", 1e6, cpu_name(), device="cuda")    # a GPU run without its device name: skipped
    rate, source = cost.throughput(scale="mini")
    assert rate == pytest.approx(200.0 * per_image) and "median of 3 mini-scale runs" in source
    rate, source = cost.throughput(scale="paper")                 # none at that scale: every scale's
    assert rate == pytest.approx(150.0 * per_image) and "median of 4 finished runs" in source
    speed = root / "speed"
    speed.mkdir()
    row = {"method": "pgd_at", "suite_none": 50.0, "model_spec": {"name": "mnist_cnn"}, "attack_steps": 10}
    (speed / "other.json").write_text(json.dumps({"device": "NVIDIA H100", "rows": [{**row, "suite_none": 1e9}]}))
    (speed / "here.json").write_text(json.dumps({"device": f"CPU {cpu_name()} (2 threads)", "rows": [row]}))
    rate, source = cost.throughput(scale="mini")
    f32 = cost.forward_flops(canonical({"name": "mnist_cnn"}), 10, (3, 32, 32))
    assert rate == pytest.approx(50.0 * 23 * f32) and source.startswith("bench speed on CPU")


def test_every_paper_target_gets_an_estimate(capsys):
    plan = Plan("paper")
    est = cost.estimate(plan, list(plan.tables.values()))
    assert len(est["targets"]) == len(plan.tables) > 0
    for t in est["targets"]:
        assert t["train_hours"] >= 0 and t["eval_hours"] >= 0
        assert t["train_hours"] + t["eval_hours"] > 0 or t["runs"] == 0, t
    assert est["total_hours"] > 1000          # GPU-days at the paper scale even near the hardware bound


def test_estimate_names_absent_data_and_what_can_run_without_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "no-data"))
    plan = Plan("mini", papers=["hat"])
    (row,) = cost.estimate(plan, [plan.table("tables/mini/hat_table2")])["targets"]
    assert row["absent"] == ["cifar10", "cifar100", "svhn", "tinyimagenet200"]
    assert row["hours_here"] == 0 < row["train_hours"]
    smoke = Plan("smoke", papers=["hat"])
    (row,) = cost.estimate(smoke, [smoke.table("tables/smoke/hat_table2")])["targets"]
    assert row["absent"] == [] and "hours_here" not in row        # synthetic data: nothing is absent


def test_bench_speed_prints_its_ratios_and_feeds_the_cost(capsys):
    """The benchmark at the smoke size (one method, eager): suite and reference images/s and their
    ratio for both networks, PGD-20 and AutoAttack throughput; its file is what --cost reads."""
    from bench import cli

    cli.main(["speed", "--quick", "--methods", "pgd_at", "--no-compile", "--threads", "1"])
    out = capsys.readouterr().out
    path = out.strip().splitlines()[-1].removeprefix("written: ")
    data = json.loads(open(path).read())
    assert data["size"] == "smoke" and data["device"].startswith(cost.this_device())
    train = [r for r in data["rows"] if r["method"] == "pgd_at"]
    assert [r["model"] for r in train] == ["resnet18 (smoke size)", "wrn (smoke size)"]
    for r in train:
        assert r["suite_none"] > 0 and r["reference"] > 0
        assert r["suite_vs_reference"] == pytest.approx(r["suite_none"] / r["reference"])
    assert {r["method"] for r in data["rows"]} == {"pgd_at", "eval: PGD-20", "eval: AutoAttack (APGD-CE, 5 iterations)"}
    assert "pgd_at" in out and "eval: PGD-20" in out
    assert cost.throughput()[1].startswith("bench speed on CPU")


def test_rates_use_what_a_run_and_an_evaluation_actually_did(tmp_path):
    """A run's recorded bp (FAT's mean steps) replaces its attack's K in the measured rate, and
    evaluations get their own rate from finished evaluations of this device."""
    root = tmp_path / "results"
    _run(root, "mini", "a", 100.0, cpu_name())
    info = json.loads((root / "mini/runs/a/run.json").read_text())
    info["final"] = {"bp": 4.0}
    (root / "mini/runs/a/run.json").write_text(json.dumps(info))
    r = cost.rates(scale="mini")
    assert r.default == pytest.approx(100.0 * (3 + 2 * 4.0) * MNIST_CNN_FLOPS)
    model = {"name": "mnist_cnn"}
    assert r.of_eval(model) == r.of(model) == r.default            # no evaluation measured yet
    (root / "mini/evals/a").mkdir(parents=True)
    (root / "mini/evals/a/pgd20-x.json").write_text(json.dumps(
        {"n": 500, "seconds": 10.0, "attack": {"name": "pgd", "steps": 20}}))
    (root / "mini/evals/a/margin-x.json").write_text(json.dumps({"n": 500, "seconds": 1.0, "attack": "none"}))
    r = cost.rates(scale="mini")
    assert r.of_eval(model) == pytest.approx(500 * 41 * MNIST_CNN_FLOPS / 10.0) and r.of(model) == r.default
    assert cost.attack_passes({"name": "pgd_es", "steps": 10, "tau": 1}) == 2 * 3
    assert cost.attack_passes({"name": "pgd_es", "steps": 10, "tau": 10}) == 2 * 10
