"""Regression of a rendered table against pinned reference numbers (the nightly check).

``bench pin`` copies a rendered table's per-cell means, stds and dataset fingerprints to
``tests/reference/<scale>/<paper>_<table>.csv`` (a figure's: its .csv of plotted points,
whose plotters write the same per-cell columns, e.g. sweep_curve and setting_panels);
``bench regress`` compares a fresh rendering with that file and fails loudly, naming every
cell that drifted. A cell drifts
when |Δ| > max(ABS_TOL, K_STD·std_pinned); a pinned cell that is now missing, or a
dataset whose fingerprint changed, is a failure too.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

from ..errors import BenchError

ABS_TOL = 2.0   # percentage points
K_STD = 3.0
REFERENCE = Path(__file__).resolve().parents[2] / "tests" / "reference"


CELL_COLUMNS = ("setting", "row", "column", "mean", "std", "dataset_sha256")


def reference_path(stem: str) -> Path:
    return REFERENCE / (stem.removeprefix("tables/").removeprefix("figures/") + ".csv")


def _cells(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CELL_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise BenchError(f"{path} has no per-cell columns {missing}: its plot kind writes other data, so it "
                             f"cannot be pinned or regressed (pin a table, or a figure whose plotter writes them)")
        return {(r["setting"], r["row"], r["column"]): r for r in reader}


def pin(stem: str) -> Path:
    src, dst = Path(f"{stem}.csv"), reference_path(stem)
    if not src.exists():
        raise BenchError(f"{src} does not exist: build {stem}.md first")
    _cells(src)   # a CSV with the per-cell columns, or one clear error
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def regress(stem: str) -> list[str]:
    """Problems found (empty when the table matches its pinned reference)."""
    ref_path, cur_path = reference_path(stem), Path(f"{stem}.csv")
    if not ref_path.exists():
        raise BenchError(f"no pinned reference {ref_path}; create it with `bench pin`")
    if not cur_path.exists():
        raise BenchError(f"{cur_path} does not exist: build {stem}.md first")
    ref, cur = _cells(ref_path), _cells(cur_path)
    problems = []
    for key, r in ref.items():
        if not r["mean"]:
            continue
        c = cur.get(key)
        if c is None or not c["mean"]:
            problems.append(f"{'/'.join(key)}: pinned {float(r['mean']):.2f}, now not run")
            continue
        if c.get("dataset_sha256") != r.get("dataset_sha256"):
            problems.append(f"{'/'.join(key)}: dataset changed ({r.get('dataset_sha256')} → {c.get('dataset_sha256')})")
        delta = float(c["mean"]) - float(r["mean"])
        tol = max(ABS_TOL, K_STD * float(r["std"] or 0.0))
        if abs(delta) > tol:
            problems.append(f"{'/'.join(key)}: pinned {float(r['mean']):.2f}, now {float(c['mean']):.2f} "
                            f"(Δ {delta:+.2f} > {tol:.2f})")
    return problems
