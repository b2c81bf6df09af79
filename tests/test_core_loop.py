"""The general training-loop mechanisms every paper uses: per-epoch parameter schedules,
methods that own their update (several optimiser steps per batch, state across batches),
and the checks that bind checkpoints and evaluations to the runs that made them."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from bench import checkpoint, schedules
from bench.errors import BenchError, SpecError
from bench.fileio import read_json, write_json
from bench.methods import METHODS
from bench.methods.base import Method, accuracy
from bench.train import train

from test_training import CONFIG

SMALL = {**CONFIG, "epochs": 2, "data": {"source": "synthetic", "synthetic_size": [128, 64]}, "batch_size": 32,
         "selection": {"metric": "clean", "every": 1, "last": 0, "n_test": 32}}


# ---- schedules of method and attack parameters ---------------------------------------------

def test_piecewise_and_ramp_schedules_and_their_rescaling():
    sched = {"method.tau": {"milestones": [30, 50, 70], "values": [0, 1, 2, 3]},
             "attack.eps": {"ramp": ["2/255", "0.5/255"], "epochs": [0, 50]}}
    v = [schedules.values(sched, e) for e in (0, 29, 30, 49, 70)]
    assert [x["method.tau"] for x in v] == [0, 0, 1, 1, 3]   # τ rises in the 31st epoch (FAT's code)
    assert v[0]["attack.eps"] == pytest.approx(2 / 255) and v[3]["attack.eps"] == pytest.approx(0.5 / 255)
    assert v[1]["attack.eps"] == pytest.approx((2 - 1.5 * 29 / 49) / 255)
    mini = schedules.rescale(sched, 4, 60)                    # DRA's 60 epochs at 4: 2, 1.25, 0.5, then 0.5
    assert [schedules.values(mini, e)["attack.eps"] * 255 for e in range(4)] == pytest.approx([2, 1.25, 0.5, 0.5])
    with pytest.raises(SpecError, match="len\\(values\\)"):
        schedules.check({"method.tau": {"milestones": [1], "values": [0]}}, "x")
    with pytest.raises(SpecError, match="method.<parameter>"):
        schedules.check({"tau": {"milestones": [1], "values": [0, 1]}}, "x")


def test_scheduled_parameters_reach_the_method_and_the_metrics(tmp_path):
    cfg = {**SMALL, "epochs": 3, "epoch_schedules": {"method.beta": {"milestones": [1, 2], "values": [1.0, 2.0, 6.0]},
                                                     "attack.eps": {"ramp": ["4/255", "8/255"], "epochs": [0, 3]}}}
    train("sched", cfg, tmp_path, progress=False)
    metrics = read_json(tmp_path / "metrics.json")
    assert [m["method.beta"] for m in metrics] == [1.0, 2.0, 6.0]
    assert [round(m["attack.eps"] * 255, 6) for m in metrics] == [4.0, 6.0, 8.0]


# ---- a method that owns its update ------------------------------------------------------------

@METHODS.register("_two_steps")
class TwoSteps(Method):
    """A clean step and then a second step per batch, with a counter kept across batches."""
    name = "_two_steps"
    defaults = {"scale": 1.0}

    def __init__(self, model, attack=None, helpers=None, **params):
        super().__init__(model, attack, helpers, **params)
        self.seen = torch.zeros((), dtype=torch.long)

    @property
    def updates_per_batch(self):
        return 2

    def train_step(self, x, y, generator, update):
        for _ in range(2):
            with self.autocast():
                logits = self.logits(x)
                loss = self.scale * F.cross_entropy(logits, y)
            update(loss, x, y)
        self.seen += len(y)
        return {"loss": loss.detach(), "clean_acc": accuracy(logits, y), "seen": self.seen.float()}

    def state_dict(self):
        return {"seen": self.seen.clone()}

    def load_state_dict(self, state):
        self.seen = state["seen"].clone()


def test_a_method_owning_its_update_steps_the_schedule_per_update(tmp_path):
    cfg = {**SMALL, "method": {"name": "_two_steps"}, "schedule": {"name": "piecewise", "milestones": [1],
                                                                    "gamma": 0.1}}
    train("two", cfg, tmp_path, progress=False)
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["scheduler"]["last_epoch"] == 2 * 4 * 2          # epochs × batches × updates per batch
    assert state["optimizer"]["state"][0]["momentum_buffer"] is not None
    assert int(state["method"]["seen"]) == 2 * 128                # the method's own state, saved for resume
    metrics = read_json(tmp_path / "metrics.json")
    assert metrics[1]["lr"] == pytest.approx(0.01)                # the decay after one epoch of 8 updates


def test_resume_restores_the_methods_state_and_reaches_the_same_weights(tmp_path, monkeypatch):
    import bench.train as loop

    cfg = {**SMALL, "method": {"name": "_two_steps"}, "epochs": 3}
    train("a", cfg, tmp_path / "a", progress=False)
    real_log = loop.log

    def stop_after_first_epoch(msg):
        real_log(msg)
        if "epoch 1/3" in msg:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "log", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train("b", cfg, tmp_path / "b", progress=False)
    monkeypatch.setattr(loop, "log", real_log)
    train("b", cfg, tmp_path / "b", progress=False)
    wa = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert read_json(tmp_path / "a" / "metrics.json")[-1]["seen"] == read_json(tmp_path / "b" / "metrics.json")[-1]["seen"]


def test_resume_with_another_thread_count_is_refused(tmp_path, monkeypatch):
    import bench.train as loop

    cfg = {**SMALL, "epochs": 2}
    real_log = loop.log

    def stop(msg):
        real_log(msg)
        if "epoch 1/2" in msg:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "log", stop)
    with pytest.raises(KeyboardInterrupt):
        train("t", cfg, tmp_path, progress=False)
    monkeypatch.setattr(loop, "log", real_log)
    torch.set_num_threads(2)
    try:
        with pytest.raises(BenchError, match="threads"):
            train("t", cfg, tmp_path, progress=False)
    finally:
        torch.set_num_threads(1)


# ---- checkpoints and evaluations bound to their runs ------------------------------------------

@pytest.fixture()
def finished(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "results"))
    from bench import layout

    run_dir = layout.run_dir("smoke", "r")
    summary = train("r", SMALL, run_dir, progress=False)
    return run_dir, summary


def test_run_json_records_checkpoint_digests_that_loading_checks(finished):
    run_dir, summary = finished
    from bench.fileio import file_digest

    assert summary["checkpoints"]["best"] == file_digest(run_dir / "best.pt")
    assert summary["runtime"] == {"device": "cpu", "threads": 1, "deterministic": False}
    checkpoint.load_run(run_dir, "best", torch.device("cpu"))
    other = torch.load(run_dir / "last.pt", weights_only=True)
    other["model"]["linear.bias"] += 1.0                          # a different (foreign) checkpoint
    torch.save(other, run_dir / "best.pt")
    with pytest.raises(BenchError, match="does not match the sha256"):
        checkpoint.load_run(run_dir, "best", torch.device("cpu"))


def test_nan_weights_are_never_evaluated(finished):
    run_dir, _ = finished
    ck = torch.load(run_dir / "last.pt", weights_only=True)
    ck["model"]["linear.weight"][0, 0] = float("nan")
    torch.save(ck, run_dir / "last.pt")
    with pytest.raises(BenchError, match="non-finite weights"):
        checkpoint.load(run_dir / "last.pt", torch.device("cpu"))


def test_a_truncated_checkpoint_is_one_clear_error(finished):
    run_dir, _ = finished
    data = (run_dir / "last.pt").read_bytes()
    (run_dir / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(BenchError, match="cannot be read"):
        checkpoint.load(run_dir / "last.pt", torch.device("cpu"))


def test_state_pt_loads_without_unpickling_code(finished):
    run_dir, _ = finished
    state = torch.load(run_dir / "state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["checkpoints"]["last"]


def test_an_evaluation_of_other_data_than_the_run_was_trained_on_is_refused(finished):
    from bench.evaluate import run_protocol

    run_dir, _ = finished
    info = read_json(run_dir / "run.json")
    info["dataset"]["sha256"] = "0" * 64                          # trained on something else
    write_json(run_dir / "run.json", info)
    with pytest.raises(BenchError, match="was trained on"):
        run_protocol("smoke", "r", SMALL, "p", {"attack": {"name": "pgd", "steps": 1}, "n_test": 16},
                     run_dir.parent.parent / "evals" / "r" / "p.json", progress=False)


def test_autoattack_resume_file_is_tied_to_checkpoint_and_protocol(tmp_path, trained):
    from bench.attacks import build
    from bench.data.loader import DeviceLoader
    from bench.data.store import Split

    model, x, y = trained
    loader = DeviceLoader(Split((x[:8] * 255).round().to(torch.uint8), y[:8]), 8, torch.device("cpu"))
    attack = build({"name": "autoattack", "attacks": ["apgd-ce"], "n_iter": 2}, model)
    state = tmp_path / "aa.partial.json"
    forged = {"key": {"run_id": "other"}, "chunks": {"0": {"n": 8, "clean": 8, "robust": 8, "after": {},
                                                           "warnings": []}}}
    state.write_text(json.dumps(forged))
    res = attack.evaluate(loader, state_path=state, state_key={"run_id": "r", "checkpoint_sha256": "abc"}, chunk=8)
    assert res["n"] == 8 and res["robust"] < 100.0                # the forged chunk was not reused
    saved = read_json(state)
    assert saved["key"]["run_id"] == "r" and saved["key"]["checkpoint_sha256"] == "abc"


# ---- spec vocabulary: quoted rows, setting patches, history protocols -------------------------

TOY_SPEC = """
paper: toyq
title: "A toy spec"
source: none
recipes:
  toy:
    model: {name: mlp, hidden: 8}
    epochs: 2
    batch_size: 256
    optimizer: {name: sgd, lr: 0.1}
    schedule: {name: constant}
    attack: {norm: linf, eps: 0.1, step_size: 0.05, steps: 2, bounds: null}
    selection: {metric: last}
protocols:
  clean: {attack: {name: none}}
  pgd: {attack: {name: pgd, eps: 0.1, step_size: 0.05, steps: 2, bounds: null}}
  time: {history: {metrics: {seconds: {key: seconds, stat: sum}, loss_last: {key: loss, stat: last, epochs: [2, 2]}}}}
aggregation: {stat: mean, seeds: [0]}
tables:
  t1:
    title: "T1"
    settings:
      toy: {label: Toy, dataset: toy3d, recipe: toy}
      toy_strong: {label: Toy strong, dataset: toy3d, recipe: toy, train: {attack: {eps: 0.2, step_size: 0.1}}}
    columns:
      clean: {label: Clean, protocol: clean, metric: clean}
      robust: {label: PGD, protocol: pgd, metric: robust}
      seconds: {label: Seconds, protocol: time, metric: seconds}
    rows:
      at: {label: AT, method: {name: pgd_at}}
      old: {label: Old, quoted: {source: "Someone et al. 2019"}}
    published:
      toy: {old: [50.0, 10.0, null]}
    claims:
      - {id: beats_old, text: "AT beats the quoted row", check: "at.toy.clean > old.toy.clean"}
  t2: {title: "T2", like: t1, rows_only: [at], columns: {clean: {label: Clean, protocol: clean, metric: clean}}}
choices:
  - {topic: "everywhere", chosen: "a choice of every target"}
  - {topic: "only T2", chosen: "a choice of T2 alone", targets: [t2]}
"""


@pytest.fixture()
def toy_spec(tmp_path, monkeypatch):
    from bench import specs

    path = tmp_path / "toyq.yaml"
    path.write_text(TOY_SPEC)
    original = specs.load
    monkeypatch.setattr(specs, "load", lambda paper, p=None: original(paper, path if paper == "toyq" else p))
    return path


def test_quoted_rows_setting_patches_and_history_render(toy_spec, tmp_path, monkeypatch):
    from bench import layout
    from bench.evaluate import run_protocol
    from bench.plan import Plan
    from bench.report.render import render

    monkeypatch.chdir(tmp_path)
    plan = Plan("smoke", papers=["toyq"])
    table = plan.table("tables/smoke/toyq_t1")
    runs = sorted(plan.runs.values(), key=lambda r: r.id)
    assert len(runs) == 2                                       # AT in both settings; the quoted row has no run
    eps = sorted(r.config["attack"]["eps"] for r in runs)
    assert eps == [0.1, 0.2]                                    # the setting's patch reached its runs only
    old = [c for c in table.cells if c.row == "old"]
    assert all(c.quoted == "Someone et al. 2019" and not c.evals and not c.runs for c in old)
    for r in runs:
        train(r.id, r.config, layout.run_dir("smoke", r.id), progress=False)
    for key in table.eval_keys():
        ev = plan.evals[key]
        run_protocol("smoke", ev.run_id, plan.run(ev.run_id).config, ev.protocol_id, ev.protocol,
                     layout.eval_path("smoke", ev.run_id, ev.protocol_id), progress=False)
    render(plan, table)
    md = (tmp_path / "tables/smoke/toyq_t1.md").read_text()
    assert "| 50.00† |" in md and "Someone et al. 2019" in md and "cited, not regenerated" in md
    seconds = next(c for c in table.cells if c.column == "seconds" and c.row == "at" and c.setting == "toy")
    result = read_json(layout.eval_path("smoke", *seconds.evals[0].split("/")))
    history = read_json(layout.run_dir("smoke", result["run_id"]) / "metrics.json")
    assert result["seconds"] == pytest.approx(sum(h["seconds"] for h in history))
    assert result["loss_last"] == pytest.approx(history[1]["loss"]) and len(result["records"]) == 2
    claim = md.split("## Claims")[1]
    assert "AT beats the quoted row" in claim and ("| holds |" in claim or "| fails |" in claim)


def test_a_tampered_evaluation_never_reaches_a_table(toy_spec, tmp_path, monkeypatch):
    from bench import layout
    from bench.evaluate import run_protocol
    from bench.plan import Plan
    from bench.report.render import render

    monkeypatch.chdir(tmp_path)
    plan = Plan("smoke", papers=["toyq"])
    table = plan.table("tables/smoke/toyq_t1")
    for r in plan.runs.values():
        train(r.id, r.config, layout.run_dir("smoke", r.id), progress=False)
    paths = []
    for key in table.eval_keys():
        ev = plan.evals[key]
        paths.append(layout.eval_path("smoke", ev.run_id, ev.protocol_id))
        run_protocol("smoke", ev.run_id, plan.run(ev.run_id).config, ev.protocol_id, ev.protocol, paths[-1],
                     progress=False)
    victim = next(p for p in paths if "pgd-" in p.name)
    good = read_json(victim)
    for tamper, message in ((lambda r: r.update(run_id="someone-else"), "holds run 'someone-else'"),
                            (lambda r: r["checkpoint"].update(sha256="f" * 64), "not the one run"),
                            (lambda r: r["dataset"].update(sha256="e" * 64), "was computed on")):
        bad = json.loads(json.dumps(good))
        tamper(bad)
        write_json(victim, bad)
        with pytest.raises(BenchError, match=message):
            render(plan, table)
    write_json(victim, good)
    render(plan, table)


# ---- speed: the compiled path, evaluation precision ------------------------------------------

TOY_RUN = {"dataset": "toy3d", "data": {"source": "real", "n_train": None}, "model": {"name": "mlp", "hidden": 16},
           "method": {"name": "standard"}, "attack": {}, "epochs": 2, "batch_size": 1000,
           "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "schedule": {"name": "constant"},
           "selection": {"metric": "last", "n_test": 256}, "precision": {"amp": "none", "channels_last": False},
           "seed": 0}


def test_the_compiled_path_reaches_the_eager_weights(tmp_path):
    """torch.compile (inductor, on the CPU here) of every forward and backward of a run: the
    same weights as the eager run within float tolerance, and a checkpoint eager code reads."""
    eager = train("e", TOY_RUN, tmp_path / "e", progress=False)
    comp = train("c", {**TOY_RUN, "precision": {**TOY_RUN["precision"], "compile": "default"}}, tmp_path / "c",
                 progress=False)
    wa = torch.load(tmp_path / "e" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "c" / "last.pt", weights_only=True)["model"]
    assert set(wa) == set(wb)                                    # no compiled-module prefixes in checkpoints
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5, rtol=1e-4), k
    assert abs(eager["final"]["loss"] - comp["final"]["loss"]) < 1e-4


@pytest.mark.parametrize("attack_cfg,graphs", [
    ({"name": "pgd_es", "steps": 6, "tau": 1}, 3),
    # full batch and subsets, with and without gradients, subsets of one (specialised), the check's own
    ({"name": "pgd", "steps": 2, "restarts": 5, "random_start": "uniform"}, 7),
])
def test_attacks_on_subsets_through_a_compiled_model_compile_a_few_graphs(attack_cfg, graphs):
    """FAT's PGD-K-τ iterates a subset that shrinks at every step, PGD's later restarts the
    examples still robust: a graph per subset size would recompile at every step; their
    batch dimension is dynamic instead."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from bench import precision
    from bench.attacks import build as build_attack

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 10)).eval()
    fmodel = precision.compiled(model, "default", torch.device("cpu"))
    attack = build_attack({**attack_cfg, "eps": "8/255", "step_size": "2/255"}, fmodel)
    torch._dynamo.reset()
    counters.clear()
    sizes = set()
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.rand(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
        if attack_cfg["name"] == "pgd_es":
            _, steps = attack.search(x, y, g)
            sizes |= {int((steps >= k).sum()) for k in range(7)}
        else:
            sizes.add(int((fmodel(attack(x, y, g)).argmax(1) == y).sum()))
    assert len(sizes) > (6 if attack_cfg["name"] == "pgd_es" else 2)   # subsets of many sizes
    assert counters["stats"]["unique_graphs"] <= graphs, dict(counters["stats"])


def test_compile_and_precision_are_part_of_the_run_id():
    from bench.plan import Plan

    base = Plan("smoke", papers=["hat"])
    comp = Plan("smoke", papers=["hat"], overrides={"compile": "auto"})
    run = next(iter(base.runs.values()))
    trained = lambda plan: {r for r, v in plan.runs.items() if "pretrained" not in v.config}
    assert not trained(base) & trained(comp)                       # models evaluated without training are shared
    assert next(iter(comp.runs.values())).config["precision"]["compile"] == "auto" and "compile" not in run.config["precision"]


def test_evaluations_run_in_the_runs_precision(trained):
    from bench import precision

    model, x, y = trained
    wrapped = precision.for_evaluation(model, torch.device("cpu"), {"amp": "bf16", "channels_last": True})
    out = wrapped(x[:8].contiguous(memory_format=torch.channels_last))
    assert out.dtype == torch.float32
    assert torch.allclose(out, model(x[:8]), atol=0.1 * model(x[:8]).abs().max().item())
    assert precision.for_evaluation(model, torch.device("cpu"), {"amp": "none"}) is model


def test_the_background_writer_keeps_order_and_raises_its_errors(tmp_path):
    import time as _time

    order = []

    def slow(name, delay):
        _time.sleep(delay)
        order.append(name)
        return name

    with checkpoint.BackgroundWriter() as writer:
        a = writer.submit(slow, "last.pt", 0.2)
        writer.submit(slow, "state.pt", 0.0)
        assert not a.done()                                          # the training goes on meanwhile
    assert order == ["last.pt", "state.pt"] and checkpoint.resolved({"last": a}) == {"last": "last.pt"}

    def fail():
        raise OSError(28, "No space left on device")

    writer = checkpoint.BackgroundWriter()
    writer.submit(fail)
    with pytest.raises(OSError, match="No space"):
        with writer:
            _time.sleep(0.1)
            writer.submit(slow, "next", 0.0)                          # the thread's error surfaces here
