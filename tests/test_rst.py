"""Robust self-training (HAT Table 4, BAT Table 3): the extra pseudo-labelled data, the
mixed batches, the cosine schedule and the planned runs. Fast tier, CPU, seconds."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from bench.data import load
from bench.data.loader import MixedLoader
from bench.data.store import Split
from bench.errors import MissingDataError, SpecError
from bench.optim import build_optimizer, build_schedule
from bench.plan import Plan

CPU = torch.device("cpu")


def indexed(n: int, value: int = 0) -> Split:
    """Images whose first pixel is their index (labelled set) or ``value`` (extra set)."""
    x = torch.full((n, 3, 4, 4), value, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(n) if value == 0 else value
    return Split(x, torch.arange(n) % 10)


def test_mixed_batches_follow_carmon_et_al():
    base, extra = indexed(200), indexed(50, value=255)
    loader = MixedLoader(base, extra, 32, CPU, fraction=0.5)
    batches = list(loader.batches(seed=3, epoch=1))
    assert len(loader) == len(batches) == math.ceil(200 / 32) and loader.n == 7 * 32
    seen = []
    for x, y in batches:
        assert x.shape[0] == 32 and x.dtype == torch.float32 and float(x.max()) <= 1.0
        first = (x[:, 0, 0, 0] * 255).round().long()
        assert (first[16:] == 255).all() and (x[16:] == 1.0).all()     # 16 extra images per batch ...
        seen += first[:16].tolist()                                   # ... and 16 labelled ones
        assert torch.equal(y[:16], torch.tensor(seen[-16:]) % 10)
    assert len(seen) == len(set(seen)) == 112                         # a fresh permutation: no repeats
    again = list(loader.batches(seed=3, epoch=1))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    other = torch.cat([x for x, _ in loader.batches(seed=3, epoch=2)])
    assert not torch.equal(other, torch.cat([x for x, _ in batches]))


def test_mixed_batches_continue_into_a_new_permutation_when_the_epoch_needs_more():
    loader = MixedLoader(indexed(40), indexed(5, value=255), 16, CPU, fraction=0.25)   # 3 batches × 12 labelled
    firsts = [(x[:12, 0, 0, 0] * 255).round().long() for x, _ in loader.batches(0, 0)]
    assert len(firsts) == 3 and sorted(torch.cat(firsts).tolist()) == sorted(set(torch.cat(firsts).tolist()))
    with pytest.raises(ValueError, match="no labelled or no extra"):
        MixedLoader(indexed(40), indexed(5, value=255), 16, CPU, fraction=0.01)


def test_cosine_schedule_is_carmon_et_al_per_epoch():
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model.parameters(), {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True})
    sched = build_schedule(opt, {"name": "cosine"}, epochs=10, steps_per_epoch=3)
    lrs = []
    for _ in range(30):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    for epoch in range(1, 11):   # their adjust_learning_rate: lr·½(1 + cos((epoch − 1)/E·π)), epochs from 1
        expected = 0.1 * 0.5 * (1 + np.cos((epoch - 1) / 10 * np.pi))
        assert lrs[3 * (epoch - 1):3 * epoch] == pytest.approx([expected] * 3)


def test_extra_data_reads_carmon_et_al_pickle(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    with pytest.raises(MissingDataError) as e:
        load("ti500k")
    assert "ti_500K_pseudo_labeled.pickle" in str(e.value) and "semisup-adv" in str(e.value)
    data = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    with open(tmp_path / "ti_500K_pseudo_labeled.pickle", "wb") as f:
        pickle.dump({"data": data, "extrapolated_targets": np.arange(20) % 10}, f)
    d = load("ti500k", n_train=8)
    assert d.train.x.shape == (8, 3, 32, 32) and d.test.x.shape[0] == 0
    assert d.fingerprint["train_subset"] is not None and d.fingerprint["full_train"] == 20
    assert d.fingerprint["exact"] is None          # no published checksum: unverified, not exact
    full = load("ti500k")
    assert torch.equal(full.train.x[5], torch.from_numpy(data[5]).permute(2, 0, 1))   # HWC → CHW
    assert full.train.y.tolist() == (np.arange(20) % 10).tolist()


def test_synthetic_extra_data_shares_the_base_classes():
    extra = load("ti500k", source="synthetic", synthetic_size=(400, 0))
    base = load("cifar10", source="synthetic", synthetic_size=(400, 64))
    # the same class templates: per-class means agree far better than across classes
    mean = lambda d, k: d.train.x[d.train.y == k].float().mean(0)
    same = (mean(extra, 3) - mean(base, 3)).abs().mean()
    other = (mean(extra, 3) - mean(base, 4)).abs().mean()
    assert same < other / 2 and not torch.equal(extra.train.x[:10], base.train.x[:10])


def test_planned_rst_runs_follow_carmon_et_al_and_share_nothing_with_table2():
    plan = Plan("paper", papers=["hat"])
    table = plan.table("tables/hat_table4.md")
    runs = {plan.evals[k].run_id: plan.run(plan.evals[k].run_id) for k in table.eval_keys()}
    trained = [r for r in runs.values() if "pretrained" not in r.config]
    assert len(runs) == 3 and len(trained) == 2
    helper = plan.run(next(r for r in trained if r.config["method"]["name"] == "hat").requires["helper"])
    for r in trained + [helper]:
        c = r.config
        assert c["data"]["extra"] == {"dataset": "ti500k", "fraction": 0.5, "n": None}
        assert c["epochs"] == 200 and c["batch_size"] == 256 and c["schedule"] == {"name": "cosine"}
        assert c["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
                                  "weight_decay": 5e-4}
        assert c["model"] == {"name": "resnet", "blocks": [2, 2, 2, 2], "width": 64} and c["seed"] == 0
    methods = {r.config["method"]["name"]: r.config["method"] for r in trained}
    assert methods["trades"]["beta"] == 6.0 and (methods["hat"]["beta"], methods["hat"]["gamma"]) == (3.5, 0.5)
    assert helper.config["method"]["name"] == "standard" and helper.config["selection"]["metric"] == "clean"
    assert set(table.datasets) == {"cifar10", "ti500k", "robustbench:cifar10/Linf/Sehwag2021Proxy_R18"}
    table2 = Plan("paper", papers=["hat"]).table("tables/hat_table2.md")
    assert not set(runs) & {plan.evals[k].run_id for k in table2.eval_keys()}


def test_extra_data_must_belong_to_the_dataset(monkeypatch):
    from bench import specs

    spec = specs.load("hat")
    spec["tables"]["table4"]["settings"]["cifar10"]["dataset"] = "cifar100"
    monkeypatch.setattr(specs, "load", lambda paper: spec)
    with pytest.raises(SpecError, match="extra data 'ti500k' is for 'cifar10', not for 'cifar100'"):
        Plan("smoke", papers=["hat"])


def test_a_run_trains_on_mixed_batches(tmp_path):
    from bench.train import train

    cfg = {"dataset": "cifar10",
           "data": {"source": "synthetic", "synthetic_size": [64, 32], "n_train": None,
                    "extra": {"dataset": "ti500k", "fraction": 0.5, "n": 256}},
           "model": {"name": "resnet", "blocks": [1, 1, 1, 1], "width": 4}, "method": {"name": "trades"},
           "attack": {"norm": "linf", "eps": "8/255", "step_size": "2/255", "steps": 2},
           "epochs": 2, "batch_size": 16, "optimizer": {"name": "sgd", "lr": 0.1}, "schedule": {"name": "cosine"},
           "selection": {"metric": "last", "n_test": 16}, "precision": {"amp": "none", "channels_last": False},
           "seed": 0}
    summary = train("rst", cfg, tmp_path, progress=False)
    assert summary["extra_dataset"]["dataset"] == "ti500k" and summary["extra_dataset"]["n_train"] == 256
    assert summary["throughput"]["images_per_s"] > 0 and (tmp_path / "best.pt").exists()
