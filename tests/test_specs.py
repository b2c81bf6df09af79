"""Specs as data: schema validation, names, published numbers, claims, run identity."""
from __future__ import annotations

import copy

import pytest
import yaml

from bench import specs
from bench.errors import SpecError
from bench.plan import Plan
from bench.plan_model import published_cells
from bench.report import claims

from conftest import REPO


def hat():
    return specs.load("hat")


def spec_file(tmp_path, mutate):
    doc = copy.deepcopy(hat())
    mutate(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["tables"]["table2"].pop("columns"), "'columns' is a required property"),
    (lambda d: d["recipes"]["cifar"].update(epochs="fifty"), "epochs"),
    (lambda d: d["recipes"]["cifar"]["optimizer"].update(lr="1.0e4"), "lr"),
])
def test_malformed_spec_is_one_clear_error(tmp_path, mutate, message):
    with pytest.raises(SpecError, match=message) as e:
        specs.load("hat", spec_file(tmp_path, mutate))
    assert "bad.yaml" in str(e.value)


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["tables"]["table2"]["rows"]["at"]["method"].update(name="pgd_att"), "unknown method 'pgd_att'"),
    (lambda d: d["tables"]["table2"]["settings"]["svhn"].update(dataset="svhm"), "unknown dataset 'svhm'"),
    (lambda d: d["recipes"]["cifar"].update(model="resnet19"), "unknown model 'resnet19'"),
    (lambda d: d["tables"]["table2"].pop("rows"), "needs 'rows'"),
    (lambda d: d["tables"]["table2"]["columns"]["clean"].update(metric="accuracy"), "metric 'accuracy'"),
    (lambda d: d["tables"]["table2"]["columns"]["clean"].update(protocol="aa2"), "unknown protocol 'aa2'"),
    (lambda d: d["protocols"]["aa"]["attack"].update(name="autoatack"), "unknown attack 'autoatack'"),
    (lambda d: d["tables"]["table2"]["published"]["svhn"].update(hat=[1.0]), "has 1 values for 2 columns"),
    (lambda d: d["tables"]["table2"]["claims"].append({"id": "x", "text": "x", "check": "hat.svhn.clen > 1"}),
     "hat.svhn.clen"),
    (lambda d: d["tables"]["table2"]["claims"].append({"id": "y", "text": "y", "check": "__import__('os')"}),
     "unsupported"),
    # component parameters, checked against each component's declaration (names and types)
    (lambda d: d["tables"]["table2"]["rows"]["trades"]["method"].update(betta=5.0),
     r"hat.yaml: table2, row trades, setting \w+, method: method 'trades'.*no parameter\(s\) \['betta'\]"),
    (lambda d: d["tables"]["table2"]["rows"]["trades"]["method"].update(beta="six"), "beta must be a number"),
    (lambda d: d["tables"]["table2"]["rows"]["hat"]["method"].update(robust_loss="kll"), "robust_loss must be one of"),
    (lambda d: d["protocols"]["pgd20"]["attack"].update(stpes=20), r"protocols.pgd20: attack 'pgd'.*\['stpes'\]"),
    (lambda d: d["protocols"]["pgd20"]["attack"].update(norm="linff"), "norm must be one of"),
    (lambda d: d["recipes"]["cifar"]["attack"].update(loss="kll"), "training attack: attack .pgd.*loss must be one of"),
    (lambda d: d["recipes"]["cifar"]["attack"].update(eps=8), "at most 1.*8/255"),
    (lambda d: d["protocols"]["pgd20"]["attack"].update(step_size="-2/255"), "non-negative"),
    (lambda d: d["protocols"]["margin_rinit"]["measure"].update(cap="far"), "cap must be a number"),
])
def test_unknown_names_are_caught_before_anything_runs(tmp_path, monkeypatch, mutate, message):
    path = spec_file(tmp_path, mutate)
    original = specs.load
    monkeypatch.setattr(specs, "load", lambda paper, p=None: original(paper, path))
    with pytest.raises(SpecError, match=message):
        Plan("smoke", papers=["hat"])


def test_a_duplicate_key_in_a_spec_is_an_error_naming_file_line_and_key(tmp_path):
    text = (specs.HERE / "hat.yaml").read_text()
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line == "    epochs: 50")   # recipes.cifar
    lines.insert(at + 1, "    epochs: 60")
    path = tmp_path / "hat.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError, match=f"{path}, line {at + 2}: duplicate key 'epochs' \\(first at line {at + 1}\\)"):
        specs.load("hat", path)


def test_a_duplicate_key_in_a_scale_is_an_error(tmp_path, monkeypatch):
    from bench import scales

    text = (scales.HERE / "smoke.yaml").read_text().replace("epochs: 2\n", "epochs: 2\nseeds: 1\nepochs: 3\n", 1)
    (tmp_path / "smoke.yaml").write_text(text)
    monkeypatch.setattr(scales, "HERE", tmp_path)
    with pytest.raises(SpecError, match="smoke.yaml, line .*: duplicate key 'epochs'"):
        scales.load("smoke")


def test_two_specs_cannot_claim_the_same_paper(tmp_path, monkeypatch):
    for name in ("hat.yaml", "schema.yaml"):
        (tmp_path / name).write_text((specs.HERE / name).read_text())
    (tmp_path / "hat_v2.yaml").write_text((specs.HERE / "hat.yaml").read_text())   # paper: hat
    monkeypatch.setattr(specs, "HERE", tmp_path)
    with pytest.raises(SpecError, match="hat_v2.yaml: paper: 'hat' differs from its file name \\('hat_v2'\\)"):
        Plan("smoke")


def test_hat_trains_its_own_trades_baseline_and_bat_stops_on_the_first_test_batch():
    plan = Plan("paper")
    runs_of = lambda paper: [plan.run(r) for r in sorted({r for t in plan.tables.values() if t.paper == paper
                                                          for c in t.cells for r in c.runs})]
    hat_trades = [r for r in runs_of("hat") if r.config.get("method", {}).get("name") == "trades"]
    # 3 seeds × (Table 2's 4 datasets + the β sweep's 5 − β = 5 on CIFAR-10, shared) + Table 4's RST
    assert len(hat_trades) == 3 * (4 + 5 - 1) + 1
    assert all(r.config["method"]["repeat_clean_forward"] is False for r in hat_trades)
    topics = {c["topic"] for c in specs.load("hat")["choices"]}
    assert any(t.startswith("TRADES baseline") for t in topics)
    margin = next(c for c in specs.load("hat")["choices"] if c["topic"].startswith("directional margin"))
    assert "+r̂ only" in margin["code"] and "sides: positive" in margin["chosen"]
    bat_es = [r for r in runs_of("bat") if r.config.get("selection", {}).get("metric") == "robust"]
    assert bat_es and all(r.config["selection"]["subset"] == "first" and r.config["selection"]["n_test"] == 128
                          for r in bat_es)


def test_every_claim_holds_on_the_published_numbers():
    for paper in specs.names():
        spec = specs.load(paper)
        for tid, table in {**spec["tables"], **spec.get("figures", {})}.items():
            values = {(r, s, c): v for t, s, r, c, v, _ in published_cells(spec) if t == tid}
            verdicts = [claims.evaluate(claim["check"], values) for claim in table.get("claims", [])
                        if not claim.get("paper_contradicts")]
            # True where the paper prints every number a claim uses; None where it states the
            # claim without printing them (e.g. a figure), never False …
            assert False not in verdicts, (paper, tid, verdicts)
            # … except a claim the paper's own numbers contradict, which says so
            for claim in table.get("claims", []):
                if claim.get("paper_contradicts"):
                    assert claims.evaluate(claim["check"], values) is False, (paper, tid, claim["id"])
            assert not verdicts or True in verdicts or "figures" in spec and tid in spec["figures"]


def test_claims_evaluate_and_report_missing_cells():
    v = {("a", "s", "x"): 2.0, ("b", "s", "x"): 1.0}
    assert claims.evaluate("a.s.x - b.s.x >= 1 and abs(b.s.x - a.s.x) <= 1", v) is True
    assert claims.evaluate("max(a.s.x, b.s.x) < 2", v) is False
    assert claims.evaluate("a.s.x > c.s.x", v) is None


def test_published_numbers_are_transcribed():
    rows = {(t, s, r, c): v for t, s, r, c, v, _ in published_cells(hat())}
    assert rows[("table3", "ti200", "hat", "beta")] == 1.75 and rows[("fig2", "toy", "at", "robust")] == 74.0
    assert rows[("table2", "cifar10", "hat", "clean")] == 84.90
    assert rows[("table2", "ti200", "at", "robust")] == 17.92
    assert ("table2", "ti200", "mart", "clean") not in rows    # "-" in the paper
    assert len([k for k in rows if k[0] == "table2"]) == 38


def test_plan_shares_runs_and_covers_the_paper_graph():
    plan = Plan("paper", papers=["hat"])
    table = plan.table("tables/hat_table2.md")
    assert len(table.eval_keys()) == 57   # 4×5×3 minus MART on TI-200
    assert len({plan.evals[k].run_id for k in table.eval_keys()}) == 57
    for run in plan.runs.values():
        if run.config.get("method", {}).get("name") == "hat":
            helper = plan.run(run.requires["helper"])
            assert helper.config["method"]["name"] == "standard"
            assert helper.config["seed"] == run.config["seed"] and helper.dataset == run.dataset
    cifar_hat = next(r for r in plan.runs.values() if r.id.startswith("cifar10-hat") and r.config["seed"] == 0)
    assert cifar_hat.config["epochs"] == 50 and cifar_hat.config["method"]["beta"] == 2.5
    assert cifar_hat.config["model"] == {"name": "resnet", "blocks": [2, 2, 2, 2], "width": 64}
    ti_hat = next(r for r in plan.runs.values() if r.id.startswith("tinyimagenet200-hat"))
    assert ti_hat.config["method"]["robust_loss"] == "ce" and ti_hat.config["epochs"] == 30
    svhn = next(r for r in plan.runs.values() if r.id.startswith("svhn-trades"))
    assert svhn.config["optimizer"]["lr"] == 0.05 and svhn.config["epochs"] == 15
    aa = plan.evals[table.eval_keys()[0]].protocol
    assert aa["n_test"] is None and aa["attack"]["version"] == "standard"   # full test set


def test_run_ids_change_with_config_and_core_code(monkeypatch):
    import bench.plan as plan_mod

    base = set(Plan("smoke", papers=["hat"]).runs)
    assert base != set(Plan("smoke", papers=["hat"], overrides={"amp": "bf16"}).runs)
    real = plan_mod.code_version
    monkeypatch.setattr(plan_mod, "code_version",
                        lambda paths: real(paths) + ("x" if "methods/mart.py" in paths else ""))
    changed = set(Plan("smoke", papers=["hat"]).runs)
    assert {r for r in base - changed} == {r for r in base if "-mart-" in r}


# ---- HAT's published numbers against the paper's text ---------------------------------------
# (table, row) → the paper's printed line, in its column order (Table 2: the four datasets
# side by side, "-" where not reported). Copied by hand from hat.md.
HAT_PRINTED = {
    ("table1", "trades_1p0"): "1.0 8.3 88.1 43.8", ("table1", "trades_2p0"): "2.0 9.3 85.6 46.3",
    ("table1", "trades_3p0"): "3.0 9.7 84.7 47.9", ("table1", "trades_4p0"): "4.0 10.3 83.6 48.5",
    ("table1", "trades_5p0"): "5.0 10.5 82.9 48.8",
    ("table2", "standard"): "Standard 94.57 0.0 76.00 0.0 96.14 0.14 65.02 0.0",
    ("table2", "at"): "AT 84.01 47.74 57.50 23.88 92.57 46.33 47.76 17.92",
    ("table2", "trades"): "TRADES 82.73 48.80 57.26 23.54 91.01 52.99 48.25 17.17",
    ("table2", "mart"): "MART 79.52 47.98 50.82 24.52 91.30 48.46 - -",
    ("table2", "hat"): "HAT 84.90 49.08 59.19 23.75 93.08 52.83 52.60 18.14",
    ("table4", "rst"): "Carmon et al. (2019)* 85.02 53.92",
    ("table4", "sehwag"): "Sehwag et al. (2021) [§] 84.38 54.43",
    ("table4", "hat"): "HAT 87.66 54.46",
    ("table5", "standard"): "Standard 94.57 72.92 0.0", ("table5", "at"): "AT 84.01 75.53 47.74",
    ("table5", "trades"): "TRADES 82.73 74.66 48.80", ("table5", "mart"): "MART 79.52 71.81 47.98",
    ("table5", "hat"): "HAT 84.90 76.74 49.08",
    ("table6", "at"): "AT 9.3", ("table6", "trades"): "TRADES 9.7", ("table6", "hat"): "HAT 9.1",
}
HAT_PAPER = REPO.parent / "shared" / "papers" / "hat.md"


def _printed_numbers(table: str, line: str) -> list[float]:
    tokens = line.split()[1:] if table == "table1" else line.split()   # Table 1's first number is β
    out = []
    for tok in tokens:
        try:
            out.append(float(tok))
        except ValueError:
            pass                                        # labels, "-"
    return out


@pytest.mark.skipif(not HAT_PAPER.exists(), reason="../shared/papers/hat.md not present")
def test_hat_lines_are_copied_from_the_paper():
    import re

    text = re.sub(r"\s+", " ", HAT_PAPER.read_text())
    for line in HAT_PRINTED.values():
        assert line in text, line


def test_every_number_of_hat_tables_1_2_4_5_6_is_in_bench_published_csv():
    import csv
    import io
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "bench", "published", "--csv"], capture_output=True, text=True,
                         check=True).stdout
    got: dict[tuple[str, str], list[float]] = {}
    for r in csv.DictReader(io.StringIO(out)):   # setting-major, column order: the paper's row order
        if r["paper"] == "hat" and r["table"] in {"table1", "table2", "table4", "table5", "table6"}:
            assert r["std"] == ""                    # HAT prints no standard deviations
            got.setdefault((r["table"], r["row"]), []).append(float(r["value"]))
    assert got == {k: _printed_numbers(k[0], line) for k, line in HAT_PRINTED.items()}
