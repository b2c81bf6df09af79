"""BAT's margin and smoothness figures (Figs. 2, 5, 8, B.1): the output_margins measure
against hand computations, the quadrant errors, the plan (paper attack settings, no new
training) and one smoke figure built through Snakemake. Fast tier, CPU."""
from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from bench.attacks import build as build_attack
from bench.data.loader import epoch_generator
from bench.measures import MEASURES
from bench.measures.output_margins import PER_EXAMPLE, output_margins, quadrant_errors
from bench.report.plots.base import quadrant as _quadrant

from conftest import REPO, tiny_model

# the paper's text: beside the repository, or beside the data root (a checkout elsewhere)
PAPER = next((p for p in (REPO.parent / "shared" / "papers" / "bat.md",
                          Path(os.environ.get("BENCH_DATA", "data")).resolve().parent / "papers" / "bat.md")
              if p.exists()), REPO.parent / "shared" / "papers" / "bat.md")


def softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


# ---- the measure's formulas -------------------------------------------------------------------

def test_margins_kl_and_alphas_match_hand_computation():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.2, 1.5], [-1.0, 3.0, 0.0]])
    logits_adv = torch.tensor([[0.5, 1.5, 0.2], [0.1, 0.0, 2.5], [0.0, 1.0, 2.0]])
    y = torch.tensor([0, 1, 1])
    out = output_margins(logits, logits_adv, y)
    for i in range(3):
        p, q, yi = softmax(logits[i].tolist()), softmax(logits_adv[i].tolist()), int(y[i])
        others = [j for j in range(3) if j != yi]
        t = max(others, key=lambda j: q[j])                        # t = argmax_{i≠y} p*_i (Fig. 5)
        expected = {
            "m_clean": p[yi] - max(p[j] for j in others),            # Eq. 4
            "m_adv": q[yi] - max(q[j] for j in others),
            "kl": sum(p[j] * math.log(p[j] / q[j]) for j in range(3)),
            "log_alpha_y": math.log(p[yi] / q[yi]),
            "log_alpha_t": math.log(p[t] / q[t]),
        }
        for key, value in expected.items():
            assert out[key][i].item() == pytest.approx(value, rel=1e-9, abs=1e-12), (i, key)
    # example 0: x right (M > 0), x* wrong (M < 0); the adversarial runner-up is class 1
    assert out["correct"].tolist() == [True, False, True] and out["correct_adv"].tolist() == [False, False, False]
    assert out["m_clean"][0] > 0 > out["m_adv"][0]
    assert out["log_alpha_y"][0] > 0 > out["log_alpha_t"][0]          # Prop. 1's assumption holds here
    # above, the runner-ups of p and p* coincide; here they differ (p: class 1, p*: class 2) and
    # t follows p*, as Fig. 5's caption defines it
    lg = torch.tensor([[3.0, 2.0, 0.0]])
    lq = torch.tensor([[1.0, 0.0, 2.0]])
    one = output_margins(lg, lq, torch.tensor([0]))
    p, q = softmax([3.0, 2.0, 0.0]), softmax([1.0, 0.0, 2.0])
    assert one["log_alpha_t"].item() == pytest.approx(math.log(p[2] / q[2]))        # t = 2, not 1


def test_identical_outputs_have_zero_kl_and_alphas():
    z = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))
    out = output_margins(z, z.clone(), torch.arange(5))
    assert torch.equal(out["m_clean"], out["m_adv"])
    for key in ("kl", "log_alpha_y", "log_alpha_t"):
        assert out[key].abs().max() < 1e-12


def test_quadrant_errors_match_a_direct_count():
    g = torch.Generator().manual_seed(1)
    n = 400
    y = torch.randint(0, 10, (n,), generator=g)
    logits = torch.randn(n, 10, generator=g) * 2 + 1.5 * torch.nn.functional.one_hot(y, 10)
    logits_adv = logits + torch.randn(n, 10, generator=g) * 2
    out = output_margins(logits, logits_adv, y)
    errors = quadrant_errors(out["correct"], out["correct_adv"])
    quadrant = Counter(_quadrant(a, b) for a, b in zip(out["m_clean"].tolist(), out["m_adv"].tolist()))
    assert set(quadrant) == {"I", "II", "III", "IV"}          # every quadrant is populated
    assert errors["nat_error"] == pytest.approx(100 * (quadrant["II"] + quadrant["III"]) / n)
    assert errors["bdy_error"] == pytest.approx(100 * quadrant["IV"] / n)
    assert errors["quadrant2"] == pytest.approx(100 * quadrant["II"] / n)
    assert errors["robust"] == pytest.approx(100 * quadrant["I"] / n)
    assert errors["rob_error"] == pytest.approx(errors["nat_error"] + errors["bdy_error"])
    assert errors["clean"] == pytest.approx(100 * (logits.argmax(1) == y).double().mean().item())


def test_measure_end_to_end_uses_the_attack_protocols_x_star():
    """On a model and data, x* is the PGD protocol's x* (same seed and stream): the measure's
    robust accuracy equals the attack's, and the per-example values are the formulas at it."""
    from bench.data.loader import DeviceLoader
    from bench.data.store import Split

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).eval()
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(24, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    with torch.no_grad():
        y = model(x.float() / 255).argmax(1)
    y[::3] = (y[::3] + 1) % 10                                   # some misclassified examples
    loader = DeviceLoader(Split(x, y), 8, torch.device("cpu"))
    attack = {"name": "pgd", "eps": "2/255", "step_size": "1/255", "steps": 5, "restarts": 2,
              "random_start": "uniform", "loss": "ce"}
    got = MEASURES.get("output_margins")(model, attack=attack).evaluate(loader, seed=3)
    ref = build_attack(attack, model).evaluate(loader, seed=3)
    assert (got["n"], got["clean"], got["robust"]) == (24, pytest.approx(ref["clean"]), pytest.approx(ref["robust"]))
    assert got["clean"] == pytest.approx(100 * 16 / 24)
    assert "bench.measures.output_margins" in got["implementation"] and "bench.attacks.pgd" in got["implementation"]
    assert got["attack"]["steps"] == 5 and got["attack"]["restarts"] == 2 and got["attack"]["bn_mode"] == "eval"
    assert all(len(got[k]) == 24 for k in PER_EXAMPLE)
    gen = epoch_generator(torch.device("cpu"), 3, 0, stream=1)
    pgd = build_attack(attack, model)
    parts = []
    for xb, yb in loader.batches():
        xa = pgd(xb, yb, gen)
        with torch.no_grad():
            parts.append(output_margins(model(xb), model(xa), yb))
    for key in PER_EXAMPLE:
        assert torch.allclose(torch.cat([p[key] for p in parts]), torch.tensor(got[key], dtype=torch.float64))
    assert got["robust"] < got["clean"]                          # the attack flipped something
    kl = torch.tensor(got["kl"], dtype=torch.float64)
    assert got["kl_median"] == pytest.approx(torch.quantile(kl, 0.5).item())
    assert kl.min() > -1e-9 and got["kl_mean"] == pytest.approx(kl.mean().item())
    m = torch.tensor(got["m_clean"])
    assert got["m_clean_above"] == pytest.approx(100 * (m > 0.9).double().mean().item())


def test_unknown_measure_parameter_is_a_clear_error():
    with pytest.raises(Exception, match="no parameter"):
        MEASURES.get("output_margins")(tiny_model(), steps=3)


# ---- the spec -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paper_plan():
    from bench.plan import Plan

    return Plan("paper", papers=["bat"])


def _runs(plan, target, setting, row):
    table = plan.table(target)
    runs = {tuple(c.runs) for c in table.cells if (c.setting, c.row) == (setting, row)}
    assert len(runs) == 1
    return runs.pop()


@pytest.mark.parametrize("figure,fsetting,table,tsetting,rows", [
    ("figures/bat_fig2", "e8", "tables/bat_table2", "e8", ["at", "trades"]),
    ("figures/bat_fig5", "e8", "tables/bat_table2", "e8", ["trades"]),
    ("figures/bat_fig5", "e16", "tables/bat_table2", "e16", ["trades"]),
    ("figures/bat_fig8", "e8", "tables/bat_table2", "e8", ["at", "trades", "bat"]),
    ("figures/bat_figB1", "e35", "figures/bat_fig3", "e35", ["at", "trades", "bat"]),
])
def test_figures_reuse_the_table_runs(paper_plan, figure, fsetting, table, tsetting, rows):
    for row in rows:
        runs = _runs(paper_plan, figure, fsetting, row)
        assert len(runs) == 3 and runs == _runs(paper_plan, table, tsetting, row)   # 3 seeds, shared ids
    fig = paper_plan.table(figure)
    assert set(fig.spec["rows"]) == set(rows)


def test_figures_train_nothing_new():
    from bench.plan import Plan

    with_figures = Plan("paper", papers=["bat"])
    needed = {r for t in with_figures.tables.values() if t.table in {"fig2", "fig5", "fig8", "figB1"}
              for c in t.cells for r in c.runs}
    others = {r for t in with_figures.tables.values() if t.table not in {"fig2", "fig5", "fig8", "figB1"}
              for c in t.cells for r in c.runs}
    assert needed and needed <= others


def test_figures_attack_with_the_papers_pgd50_at_the_settings_eps(paper_plan):
    expected_eps = {("fig2", "e8"): "8/255", ("fig5", "e8"): "8/255", ("fig5", "e16"): "16/255",
                    ("fig8", "e8"): "8/255", ("figB1", "e35"): 0.35}
    for (fid, sid), eps in expected_eps.items():
        table = paper_plan.table(f"figures/bat_{fid}")
        cells = [c for c in table.cells if c.setting == sid]
        assert cells and all(len(c.evals) == 3 for c in cells)
        for c in cells:
            for key in c.evals:
                ev = paper_plan.evals[key]
                proto = ev.protocol
                assert proto["measure"]["name"] == "output_margins" and proto["n_test"] is None   # full test set
                assert proto["checkpoint"] == "best"
                a = proto["measure"]["attack"]
                mnist = fid == "figB1"
                assert (a["name"], a["norm"], a["steps"], a["restarts"], a["random_start"], a["loss"]) == \
                    ("pgd", "linf", 50, 10, "uniform", "ce")
                assert a["eps"] == eps and a["step_size"] == (0.01 if mnist else "2/255")
        # the same attack as the table's PGD-50 column of the same run
        pgd_proto = "pgd50_mnist" if fid == "figB1" else "pgd50"
        run = cells[0].evals[0].split("/")[0]
        pgd = [e for k, e in paper_plan.evals.items() if e.run_id == run and e.protocol_id.startswith(pgd_proto + "-")]
        assert len(pgd) == 1
        assert pgd[0].protocol["attack"] == paper_plan.evals[cells[0].evals[0]].protocol["measure"]["attack"]


def test_published_figure_numbers_are_in_the_paper_and_the_claim_holds_on_them(paper_plan):
    from bench.plan_model import published_cells
    from bench.report import claims
    from bench import specs

    spec = specs.load("bat")
    pub = {(t, s, r, c): v for t, s, r, c, v, _ in published_cells(spec) if t.startswith("fig")}
    assert pub[("fig8", "e8", "bat", "nat")] == 14.9 and pub[("fig8", "e8", "trades", "nat")] == 17.8
    assert pub[("fig8", "e8", "bat", "bdy")] == 28.8 and pub[("fig8", "e8", "at", "bdy")] == 31.6
    assert len(pub) == 4 + 7
    if PAPER.exists():
        text = re.sub(r"\s+", " ", PAPER.read_text())
        for value in pub.values():
            assert re.search(rf"{value:g}\s*\\?%", text) or f"{value}%" in text, value
    check = next(c for c in spec["figures"]["fig8"]["claims"] if c["id"] == "bat_nat_below_trades_bdy_below_at")
    cells = {(r, s, c): v for (_, s, r, c), v in pub.items()}
    assert claims.evaluate(check["check"], cells) is True
    # and it can fail: BAT's boundary error above AT's
    assert claims.evaluate(check["check"], {**cells, ("bat", "e8", "bdy"): 32.0}) is False


# ---- one smoke figure through Snakemake ---------------------------------------------------------

def test_smoke_figB1_builds_through_snakemake(tmp_path):
    from test_workflow import snakemake

    env = {"BENCH_RESULTS": str(tmp_path / "results"), "BENCH_CACHE": str(tmp_path / "cache")}
    snakemake(tmp_path, "--cores", "2", "figures/smoke/bat_figB1.png", env=env)
    stem = tmp_path / "figures/smoke/bat_figB1"
    for ext in (".png", ".pdf", ".csv", ".md"):
        assert stem.with_suffix(ext).stat().st_size > 0, ext
    rows = list(csv.DictReader(open(stem.with_suffix(".csv"))))
    summary = {r["row"]: r for r in rows if r["point"] == "errors"}
    points = [r for r in rows if r["point"] != "errors"]
    assert set(summary) == {"at", "trades", "bat"} and len(points) == 3 * 16      # 16 test images at smoke
    for rid, s in summary.items():
        mine = [p for p in points if p["row"] == rid]
        q = Counter(p["quadrant"] for p in mine)
        assert float(s["nat_error_seed0"]) == pytest.approx(100 * (q["II"] + q["III"]) / len(mine))
        assert float(s["bdy_error_seed0"]) == pytest.approx(100 * q["IV"] / len(mine))
        assert float(s["rob_error"]) == pytest.approx(float(s["nat_error"]) + float(s["bdy_error"]))
        assert s["seeds"] == "2"
    md = stem.with_suffix(".md").read_text()
    for needle in ("smoke", "R_nat (%)", "R_bdy (%)", "| 8.40 |", "| 94.40 |", "## Claims",
                   "AT shows the highest boundary error", "x* of Figures 2, 5, 8 and B.1"):
        assert needle in md, needle
