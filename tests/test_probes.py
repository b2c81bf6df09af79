"""Training-time probes (bench/probes; BAT Figs. 4, 6, 7): their quantities against direct
autograd computations, training unchanged by them, records kept across a resume, the
figures' plan at the paper scale and one smoke figure through Snakemake."""
from __future__ import annotations

import copy
import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F

from bench.probes import PROBES
from bench.probes.base import Step

from conftest import tiny_model

# ---- the quantities against a direct computation ---------------------------------------------


def _setup(seed=0):
    from bench.methods import METHODS

    torch.manual_seed(seed)
    model = tiny_model().train()
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    method = METHODS.get("trades")(model, {"eps": 8 / 255, "step_size": 2 / 255, "steps": 2}, beta=5.0)
    return model, method, x, y


def _direct_grad(output, model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(output, params, retain_graph=True)])


def _direct_margin_grad(model, x, y):
    """∇θ mean(p_y − max_{i≠y} p_i), written independently of the probe's helpers."""
    m = copy.deepcopy(model)   # own BatchNorm buffers: the real model is not touched
    p = F.softmax(m(x), 1)
    mask = F.one_hot(y, 10).bool()
    margin = (p[mask] - p.masked_fill(mask, -1.0).max(1).values).mean()
    params = [q for q in m.parameters() if q.requires_grad]
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(margin, params)]), margin.item()


def test_term_angles_match_autograd():
    model, method, x, y = _setup()
    g = torch.Generator().manual_seed(0)
    terms, _ = method.objective(x, y, g)
    loss = terms["natural"] + terms["robust"]
    probe = PROBES.get("term_angles")(model)
    probe.after_loss(Step(0, 3, 4), x, y, terms, loss)
    rec = probe.end_epoch(0)[0]
    g_m, m = _direct_margin_grad(model, x, y)
    assert rec["epoch"] == 1 and rec["margin"] == pytest.approx(m, abs=1e-6)
    for name in ("natural", "robust"):
        d = -_direct_grad(terms[name], model)
        cos = (d @ g_m / (d.norm() * g_m.norm())).item()
        assert rec[f"cos_{name}"] == pytest.approx(cos, abs=1e-4)
        assert rec[f"angle_{name}"] == pytest.approx(math.degrees(math.acos(cos)), abs=0.05)
    # not the last batch of the epoch: nothing recorded
    probe.after_loss(Step(1, 0, 4), x, y, terms, loss)
    assert probe.end_epoch(1) == []


def test_margin_gain_matches_autograd():
    model, method, x, y = _setup(1)
    terms, _ = method.objective(x, y, torch.Generator().manual_seed(0))
    loss = terms["natural"] + terms["robust"]
    probe = PROBES.get("margin_gain")(model)
    probe.after_loss(Step(0, 0, 1), x, y, terms, loss)
    rec = probe.end_epoch(0)[0]
    g_m, m = _direct_margin_grad(model, x, y)
    g_l = _direct_grad(loss, model)
    assert rec["expected_gain"] == pytest.approx(-(g_m @ g_l).item(), rel=1e-4, abs=1e-8)
    assert rec["margin"] == pytest.approx(m, abs=1e-6)


def test_grad_norm_matches_autograd_and_stops_after_its_batches():
    model, method, x, y = _setup(2)
    probe = PROBES.get("grad_norm")(model, batches=2)
    expected = []
    for i in range(3):
        loss, _ = method.loss(x, y, torch.Generator().manual_seed(i))
        model.zero_grad()
        loss.backward()
        direct = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).norm().item()
        expected.append((direct, abs(loss.item())))
        probe.after_backward(Step(0, i, 3), loss)
    recs = probe.end_epoch(0)
    assert [r["batch"] for r in recs] == [1, 2]          # only the first `batches` batches
    for r, (gn, l) in zip(recs, expected):
        assert r["grad_norm"] == pytest.approx(gn, rel=1e-5)
        assert r["normalized"] == pytest.approx(gn / l, rel=1e-5)


def test_the_margin_forward_leaves_no_trace():
    """The probe's extra clean forward restores BatchNorm statistics and draws no random numbers."""
    model, method, x, y = _setup(3)
    terms, _ = method.objective(x, y, torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    probe = PROBES.get("term_angles")(model)
    probe.after_loss(Step(0, 0, 1), x, y, terms, terms["natural"] + terms["robust"])
    assert torch.equal(rng, torch.get_rng_state())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())
    (terms["natural"] + terms["robust"]).backward()      # the method's graph is still usable


def test_loss_is_the_sum_of_the_objective_terms():
    model, method, x, y = _setup(4)
    loss, stats = method.loss(x, y, torch.Generator().manual_seed(0))
    model2, method2, _, _ = _setup(4)
    terms, _ = method2.objective(x, y, torch.Generator().manual_seed(0))
    assert set(terms) == {"natural", "robust"}
    assert torch.equal(loss, terms["natural"] + terms["robust"]) and torch.equal(stats["loss"], loss.detach())


# ---- training with probes ---------------------------------------------------------------------

CONFIG = {
    "dataset": "cifar10", "data": {"source": "synthetic", "synthetic_size": [96, 32], "n_train": None},
    "model": {"name": "resnet", "blocks": [1, 1, 1, 1], "width": 8},
    "method": {"name": "bat", "beta": 5.0, "m": 2},
    "attack": {"norm": "linf", "eps": "8/255", "step_size": "2/255", "steps": 2},
    "epochs": 3, "batch_size": 32,
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
    "schedule": {"name": "piecewise", "milestones": [2], "gamma": 0.1},
    "selection": {"metric": "last", "n_test": 32},
    "precision": {"amp": "none", "channels_last": False}, "seed": 3,
}
# every registered probe (a new one is exercised automatically), grad_norm on the first 5 batches
PROBED = {**CONFIG, "probes": {**{name: {} for name in PROBES}, "grad_norm": {"batches": 5}}}


def _weights(run_dir):
    return torch.load(run_dir / "last.pt", weights_only=False)


def _same_weights(a, b):
    sa, sb = _weights(a), _weights(b)
    sa = sa.get("model", sa) if isinstance(sa, dict) else sa
    sb = sb.get("model", sb) if isinstance(sb, dict) else sb
    flat = lambda s: {k: v for k, v in s.items() if isinstance(v, torch.Tensor)}
    fa, fb = flat(sa), flat(sb)
    assert fa.keys() == fb.keys() and fa
    return all(torch.equal(fa[k], fb[k]) for k in fa)


def _metrics(run_dir):
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")}
            for r in json.loads((run_dir / "metrics.json").read_text())]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from bench.train import train

    root = tmp_path_factory.mktemp("probes")
    torch.set_num_threads(1)
    train("plain", CONFIG, root / "plain", progress=False)
    train("probed", PROBED, root / "probed", progress=False)
    return root


def test_training_with_probes_gives_identical_weights(runs):
    assert not (runs / "plain" / "probes.json").exists()
    assert _same_weights(runs / "plain", runs / "probed")
    assert _metrics(runs / "plain") == _metrics(runs / "probed")


def test_probe_records_cover_the_run(runs):
    rec = json.loads((runs / "probed" / "probes.json").read_text())
    assert [r["epoch"] for r in rec["term_angles"]] == [1, 2, 3]
    assert [r["epoch"] for r in rec["margin_gain"]] == [1, 2, 3]
    assert [r["batch"] for r in rec["grad_norm"]] == [1, 2, 3, 4, 5]     # 3 batches per epoch, first 5
    for r in rec["term_angles"]:
        assert 0 <= r["angle_natural"] <= 180 and 0 <= r["angle_robust"] <= 180
    assert all(r["normalized"] > 0 for r in rec["grad_norm"])


def test_resume_keeps_the_probe_records(runs, monkeypatch):
    import bench.train as train_mod

    class Killed(Exception):
        pass

    real_log = train_mod.log

    def dying_log(msg):
        real_log(msg)
        if " epoch 2/" in msg:     # after epoch 2's state.pt is written
            raise Killed

    out = runs / "resumed"
    monkeypatch.setattr(train_mod, "log", dying_log)
    with pytest.raises(Killed):
        train_mod.train("probed", PROBED, out, progress=False)
    assert not (out / "run.json").exists()
    part = json.loads((out / "probes.json").read_text())
    assert [r["epoch"] for r in part["margin_gain"]] == [1, 2]
    monkeypatch.setattr(train_mod, "log", real_log)
    train_mod.train("probed", PROBED, out, progress=False)
    assert json.loads((out / "probes.json").read_text()) == json.loads((runs / "probed" / "probes.json").read_text())
    assert _same_weights(out, runs / "probed")


def test_unknown_probe_parameter_is_a_clear_error():
    from bench.errors import SpecError

    with pytest.raises(SpecError, match="no parameter"):
        PROBES.get("grad_norm")(tiny_model(), steps=3)


# ---- the figures' plan -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paper_plan():
    from bench.plan import Plan

    return Plan("paper", papers=["bat"])


def _runs(plan, fig):
    table = plan.table(f"figures/bat_{fig}")
    return {c.row: c.runs for c in table.cells}, table


def test_figures_plan_at_paper_scale(paper_plan):
    rows4, fig4 = _runs(paper_plan, "fig4")
    rows6, _ = _runs(paper_plan, "fig6")
    rows7, _ = _runs(paper_plan, "fig7")
    assert set(rows4) == {"trades"} and set(rows6) == set(rows7) == {"at", "trades", "bat"}
    assert rows6 == rows7 and rows4["trades"] == rows6["trades"]          # one run per method and seed
    for row, run_ids in rows6.items():
        assert len(run_ids) == 3
        for rid in run_ids:
            cfg = paper_plan.run(rid).config
            assert cfg["dataset"] == "cifar10" and cfg["model"]["name"] == "wide_resnet"
            assert (cfg["model"]["depth"], cfg["model"]["widen"]) == (28, 10)
            assert cfg["epochs"] == 40 and cfg["batch_size"] == 128
            assert cfg["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5.0e-4}
            assert cfg["schedule"]["milestones"] == [40, 60, 80]
            assert (cfg["attack"]["eps"], cfg["attack"]["step_size"], cfg["attack"]["steps"]) == ("8/255", "2/255", 10)
            assert cfg["probes"] == {"grad_norm": {"batches": 2000}, "margin_gain": {"epochs": 40},
                                     "term_angles": {"from_epoch": 3}}
            if row != "at":
                assert cfg["method"]["beta"] == 5.0
    # the figures' runs are their own: no table run records probes
    table_runs = {r for t in paper_plan.tables.values() if not t.table.startswith("fig") for c in t.cells
                  for r in c.runs}
    assert not table_runs & set(rows6["bat"])
    assert all("probes" not in paper_plan.run(r).config for r in table_runs)
    # every probe column reads a probe protocol without checkpoint or test data
    for c in fig4.cells:
        for key in c.evals:
            proto = paper_plan.evals[key].protocol
            assert proto["probe"]["name"] == "term_angles" and "checkpoint" not in proto


def test_a_probe_column_on_runs_without_the_probe_is_a_clear_error():
    from bench import specs
    from bench.errors import SpecError
    from bench.plan import Plan

    spec = copy.deepcopy(specs.load("bat"))
    spec["figures"]["fig7"]["settings"]["e8"]["recipe"] = "step"
    plan = Plan("smoke", papers=["hat"])      # the BAT spec is added below, modified
    with pytest.raises(SpecError, match="does not record"):
        plan._add_paper({**spec, "figures": {"fig7": spec["figures"]["fig7"]}, "choices": []})


def test_kl_claim_can_fail():
    from bench import specs
    from bench.report import claims

    check = next(c for c in specs.load("bat")["figures"]["fig4"]["claims"] if c["id"] == "kl_opposes_margin")["check"]
    assert claims.evaluate(check, {("trades", "e8", "rob_late"): 120.0, ("trades", "e8", "nat_late"): 40.0}) is True
    assert claims.evaluate(check, {("trades", "e8", "rob_late"): 80.0, ("trades", "e8", "nat_late"): 40.0}) is False


# ---- one smoke figure through Snakemake ---------------------------------------------------------

def test_smoke_fig4_builds_through_snakemake(tmp_path):
    from test_workflow import snakemake

    env = {"BENCH_RESULTS": str(tmp_path / "results"), "BENCH_CACHE": str(tmp_path / "cache")}
    snakemake(tmp_path, "--cores", "2", "figures/smoke/bat_fig4.png", env=env)
    stem = tmp_path / "figures/smoke/bat_fig4"
    for ext in (".png", ".pdf", ".csv", ".md"):
        assert stem.with_suffix(ext).stat().st_size > 0, ext
    rows = list(csv.DictReader(open(stem.with_suffix(".csv"))))
    assert {r["key"] for r in rows} == {"angle_natural", "angle_robust"}
    assert sorted({int(float(r["epoch"])) for r in rows}) == [1, 2]           # smoke: 2 epochs
    assert all(0 <= float(r["mean"]) <= 180 and r["seeds"] == "2" for r in rows)
    md = stem.with_suffix(".md").read_text()
    assert "kl_opposes_margin" in md or "KL term" in md
    probes = list((tmp_path / "results" / "smoke" / "runs").glob("*/probes.json"))
    assert len(probes) == 2                                                    # TRADES, 2 seeds
