"""Reports: verdict rules, pinned-reference regression."""
from __future__ import annotations

import csv

import pytest

from bench.errors import BenchError
from bench.report import regress, verdicts


def test_cell_verdicts():
    v = dict(planned=True, std=0.3, std_pub=None, paper_scale=True, exact_data=True)
    assert verdicts.cell_verdict(mean=84.0, published=84.9, **v) == verdicts.REPRODUCED
    assert verdicts.cell_verdict(mean=82.0, published=84.9, **v) == verdicts.DIFFERS
    assert verdicts.cell_verdict(mean=82.0, published=84.9, **{**v, "paper_scale": False}) == verdicts.SCALE
    assert verdicts.cell_verdict(mean=82.0, published=84.9, **{**v, "exact_data": False}) == verdicts.SUBSTITUTE
    assert verdicts.cell_verdict(mean=None, published=84.9, **v) == verdicts.NOT_RUN
    assert verdicts.cell_verdict(mean=1.0, published=None, **v) == verdicts.NOT_REPORTED
    assert verdicts.cell_verdict(mean=None, published=None, **{**v, "planned": False}) == verdicts.ABSENT
    assert verdicts.tolerance(1.0, 1.0) == pytest.approx(2 * 2 ** 0.5)


def write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["setting", "row", "column", "mean", "std", "dataset_sha256"])
        w.writeheader()
        w.writerows(rows)


def test_regress_fails_loudly_on_drift(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(regress, "REFERENCE", tmp_path / "ref")
    stem = "tables/mini/x_table1"
    (tmp_path / "tables/mini").mkdir(parents=True)
    (tmp_path / "ref/mini").mkdir(parents=True)
    base = [dict(setting="s", row="a", column="clean", mean="50.0", std="0.5", dataset_sha256="h"),
            dict(setting="s", row="b", column="clean", mean="40.0", std="", dataset_sha256="h")]
    write(tmp_path / "ref/mini/x_table1.csv", base)
    write(tmp_path / f"{stem}.csv", [dict(base[0], mean="51.5"), base[1]])
    assert regress.regress(stem) == []
    write(tmp_path / f"{stem}.csv", [dict(base[0], mean="53.0"), dict(base[1], mean="", dataset_sha256="")])
    problems = regress.regress(stem)
    assert len(problems) == 2 and "Δ +3.00" in problems[0] and "not run" in problems[1]
    write(tmp_path / f"{stem}.csv", [dict(base[0], dataset_sha256="other"), base[1]])
    assert "dataset changed" in regress.regress(stem)[0]
    with pytest.raises(BenchError, match="no pinned reference"):
        regress.regress("tables/mini/y_table1")
