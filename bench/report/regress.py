"""Regression of a rendered target against pinned reference numbers (the nightly check).

``bench pin`` copies a rendered table's per-cell means, stds and dataset fingerprints (its
.csv; a figure's .cells.csv alike) to ``tests/reference/<scale>/data-<key>/<name>.csv``,
where the key is a digest of the fingerprints of the data the numbers were computed on, with
a ``<name>.json`` saying which data that is. ``bench regress`` renders nothing: it compares a
fresh rendering with the pin *made on the same data* and fails loudly, naming every cell that
drifted. A pin made on a substitute (the JPEG CIFAR-10) is therefore never compared with the
real dataset: on other data there is no pin, which is an error naming the pins that exist.
A cell drifts when |Δ| > max(ABS_TOL, K_STD·std_pinned); a pinned cell that is now missing
is a failure too.
"""
from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path
from typing import Any

from ..errors import BenchError
from ..fileio import read_json, write_json

ABS_TOL = 2.0   # percentage points
K_STD = 3.0
REFERENCE = Path(__file__).resolve().parents[2] / "tests" / "reference"


CELL_COLUMNS = ("setting", "row", "column", "mean", "std", "dataset_sha256")


def _cells(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CELL_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise BenchError(f"{path} has no per-cell columns {missing}: it is not a rendered target's cells "
                             f"(a table's .csv, a figure's .cells.csv)")
        return {(r["setting"], r["row"], r["column"]): r for r in reader}


def rendered_csv(stem: str) -> Path:
    """The cells a target's rendering writes: tables/x.csv, or a figure's figures/x.cells.csv."""
    return Path(f"{stem}.csv") if stem.startswith("tables/") else Path(f"{stem}.cells.csv")


def data_key(cells: dict[tuple[str, str, str], dict[str, str]]) -> str:
    """A digest of the data fingerprints the rendered numbers were computed on."""
    shas = sorted({r["dataset_sha256"] for r in cells.values() if r.get("dataset_sha256")})
    if not shas:
        raise BenchError("the rendered numbers record no dataset fingerprint (nothing ran?): nothing to pin")
    return "data-" + hashlib.sha256(" ".join(shas).encode()).hexdigest()[:12]


def _scale_and_name(stem: str) -> tuple[str, str]:
    parts = Path(stem).parts   # tables/<scale>/<name> or tables/<name> (paper)
    return (parts[1], parts[2]) if len(parts) == 3 else ("paper", parts[1])


def reference_path(stem: str, key: str) -> Path:
    scale, name = _scale_and_name(stem)
    return REFERENCE / scale / key / f"{name}.csv"


def pins(stem: str) -> dict[str, dict[str, Any]]:
    """The pins of a target: key → what they were made on."""
    scale, name = _scale_and_name(stem)
    found = {}
    for p in sorted((REFERENCE / scale).glob(f"data-*/{name}.csv")):
        meta = p.with_suffix(".json")
        found[p.parent.name] = read_json(meta) if meta.exists() else {}
    return found


def pinned_targets(scale: str) -> list[str]:
    """Every target with a pin at ``scale`` (read from the pins' records), sorted."""
    found = set()
    for meta in (REFERENCE / scale).glob("data-*/*.json"):
        target = read_json(meta).get("target")
        if not target:     # `pin` always records it; a record without one cannot say table or figure
            raise BenchError(f"{meta} names no target: remove the pin and make it again with `bench pin`")
        found.add(target)
    return sorted(found)


def pin(stem: str, datasets: dict[str, dict[str, Any]] | None = None) -> Path:
    """Pin the rendered numbers of ``stem``, keyed by the data they were computed on
    (``datasets``: name → fingerprint, recorded beside the pin)."""
    src = rendered_csv(stem)
    if not src.exists():
        raise BenchError(f"{src} does not exist: build {stem} first")
    key = data_key(_cells(src))
    dst = reference_path(stem, key)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    write_json(dst.with_suffix(".json"), {"target": stem, "datasets": datasets or {}})
    return dst


def regress(stem: str) -> list[str]:
    """Problems found (empty when the target matches the pin made on the same data)."""
    cur_path = rendered_csv(stem)
    if not cur_path.exists():
        raise BenchError(f"{cur_path} does not exist: build {stem} first")
    cur = _cells(cur_path)
    key = data_key(cur)
    ref_path = reference_path(stem, key)
    if not ref_path.exists():
        made = pins(stem)
        on = {k: ", ".join(f"{n}: {fp.get('source')}" for n, fp in m.get("datasets", {}).items()) or "data not recorded"
              for k, m in made.items()}
        listed = "; ".join(f"{k} ({v})" for k, v in on.items()) or "none"
        raise BenchError(f"no pinned reference for {stem} on this data ({key}); pins exist for: {listed}. "
                         f"A pin is only compared with renderings on the data it was made on: make one for this data "
                         f"with `bench pin {stem}` after checking the rendering")
    ref = _cells(ref_path)
    problems = []
    for cell, r in ref.items():
        if not r["mean"]:
            continue
        c = cur.get(cell)
        if c is None or not c["mean"]:
            problems.append(f"{'/'.join(cell)}: pinned {float(r['mean']):.2f}, now not run")
            continue
        delta = float(c["mean"]) - float(r["mean"])
        tol = max(ABS_TOL, K_STD * float(r["std"] or 0.0))
        if abs(delta) > tol:
            problems.append(f"{'/'.join(cell)}: pinned {float(r['mean']):.2f}, now {float(c['mean']):.2f} "
                            f"(Δ {delta:+.2f} > {tol:.2f})")
    return problems

