"""Models evaluated without training (HAT Table 4's RobustBench ResNet-18): the zoo's
architecture through robustbench, weights from a file under the data root, clear errors.
Fast tier, CPU, seconds; nothing is downloaded."""
from __future__ import annotations

import hashlib
import json
import sys

import pytest
import torch

from bench import checkpoint
from bench.data.locate import available, checkpoint_path, missing_message
from bench.errors import BenchError, MissingDataError, SpecError
from bench.models import build
from bench.train import train

SEHWAG = {"robustbench": "Sehwag2021Proxy_R18", "dataset": "cifar10", "threat_model": "Linf"}
ZOO_MODEL = {"name": "robustbench", "id": "Sehwag2021Proxy_R18", "dataset": "cifar10", "threat_model": "Linf"}
REQUIREMENT = "robustbench:cifar10/Linf/Sehwag2021Proxy_R18"


def config(pretrained, model):
    return {"dataset": "cifar10", "data": {"source": "synthetic", "synthetic_size": [32, 16], "n_train": None},
            "model": model, "pretrained": pretrained, "epochs": 0, "seed": 0}


def test_robustbench_imports_with_pyautoattack_as_autoattack():
    import pyautoattack

    from bench.models.robustbench import zoo

    rb = zoo()
    assert sys.modules["autoattack"] is pyautoattack and hasattr(rb.utils, "load_model")
    model = build(ZOO_MODEL, 10, 3)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962     # the zoo's ResNet-18


def test_unknown_robustbench_model_is_a_clear_error():
    with pytest.raises(SpecError, match="unknown RobustBench model 'Sehwag2021Proxy_R19'.*Sehwag2021Proxy_R18"):
        build({**ZOO_MODEL, "id": "Sehwag2021Proxy_R19"}, 10, 3)
    with pytest.raises(SpecError, match="not 3-channel images of 100 classes"):
        build(ZOO_MODEL, 100, 3)


def test_missing_checkpoint_names_the_file_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    assert not available(REQUIREMENT)
    msg = missing_message(REQUIREMENT)
    assert str(tmp_path / "robustbench/cifar10/Linf/Sehwag2021Proxy_R18.pt") in msg
    assert f"bench data download {REQUIREMENT}" in msg
    with pytest.raises(MissingDataError, match="Sehwag2021Proxy_R18.pt"):
        train("pre", config(SEHWAG, ZOO_MODEL), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "best.pt").exists()


def test_robustbench_weights_from_the_data_root_become_the_runs_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    torch.manual_seed(1)
    zoo = build(ZOO_MODEL, 10, 3).eval()
    path = checkpoint_path(REQUIREMENT)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in zoo.state_dict().items()}}, path)   # as released
    summary = train("pre", config(SEHWAG, ZOO_MODEL), tmp_path / "run", progress=False)
    origin = summary["pretrained"]
    assert origin["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and origin["robustbench"] == "1.1.1"
    assert summary["throughput"] is None and summary["epochs"] == 0
    x = torch.rand(4, 3, 32, 32)
    for name in ("best.pt", "last.pt"):
        model, ckpt = checkpoint.load(tmp_path / "run" / name, torch.device("cpu"))
        assert torch.allclose(model(x), zoo(x), atol=1e-5) and ckpt["pretrained"] == origin
    assert json.loads((tmp_path / "run" / "run.json").read_text())["pretrained"] == origin


def test_a_local_checkpoint_file_loads_into_a_suite_model(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    small = {"name": "resnet", "blocks": [1, 1, 1, 1], "width": 4}
    torch.manual_seed(2)
    ours = build(small, 10, 3).eval()
    torch.save({"model": ours.state_dict()}, tmp_path / "mine.pt")
    summary = train("file", config({"file": "mine.pt"}, small), tmp_path / "run", progress=False)
    model, _ = checkpoint.load(tmp_path / "run" / "best.pt", torch.device("cpu"))
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(model(x), ours(x)) and summary["pretrained"]["weights"] == "file:mine.pt"
    with pytest.raises(BenchError, match="does not fit model"):
        train("bad", config({"file": "mine.pt"}, {**small, "width": 8}), tmp_path / "bad", progress=False)


def test_random_weights_are_a_labelled_stand_in(tmp_path):
    summary = train("smoke", config({**SEHWAG, "weights": "random"}, ZOO_MODEL), tmp_path, progress=False)
    assert "random weights" in summary["pretrained"]["weights"] and "stand-in" in summary["pretrained"]["weights"]
    assert summary["dataset"]["exact"] is False


def test_planned_pretrained_row_is_one_run_for_every_seed():
    from bench.plan import Plan

    plan = Plan("paper", papers=["hat"])
    table = plan.table("tables/hat_table4.md")
    cells = [c for c in table.cells if c.row == "sehwag"]
    assert all(len(c.runs) == 1 and len(c.evals) == 1 for c in cells)
    run = plan.run(cells[0].runs[0])
    assert run.config["pretrained"] == SEHWAG and run.config["model"] == ZOO_MODEL and not run.requires
    assert plan.resources("train", run.id)["runtime"] == 10
    smoke = Plan("smoke", papers=["hat"]).table("tables/smoke/hat_table4.md")
    assert {c.row for c in smoke.cells} == {"rst", "sehwag", "hat"} and smoke.datasets == ["cifar10"]
