"""Shared pieces of the plotters (one file per plot kind in this package)."""
from __future__ import annotations

from typing import Any

from ... import layout
from ...errors import SpecError
from ...fileio import read_json
from ...plan import Plan
from ..aggregate import CellResult, TableResult


def find_cell(res: TableResult, row: str, setting: str, column: str) -> CellResult:
    return next(c for c in res.cells if (c.cell.row, c.cell.setting, c.cell.column) == (row, setting, column))


def fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}%"


def first_seed_result(plan: Plan, res: TableResult, row: str, setting: str, column: str) -> dict[str, Any]:
    """The evaluation behind a cell for its first seed (a measure's per-example data)."""
    c = find_cell(res, row, setting, column)
    if not c.cell.evals:
        raise SpecError(f"{res.table.table}: {row}/{setting}/{column} has no evaluation")
    run_id, pid = c.cell.evals[0].split("/")
    return read_json(layout.eval_path(plan.scale_name, run_id, pid))


KL_FLOOR = 1e-8   # KL(p ‖ p*) on a log axis: values below (exact zeros, rounding) are shown here


def quadrant(m_clean: float, m_adv: float) -> str:
    if m_adv > 0:
        return "I" if m_clean > 0 else "II"
    return "IV" if m_clean > 0 else "III"


def cell_row(res: TableResult, c: CellResult) -> dict[str, Any]:
    """A cell as a line of a figure's CSV, with the per-cell columns ``bench regress`` compares
    (setting, row, column, mean, std, dataset_sha256)."""
    fp = res.datasets.get(c.cell.dataset, {}) if c.n else {}
    return {"setting": c.cell.setting, "row": c.cell.row, "column": c.cell.column, "mean": c.mean, "std": c.std,
            "n": c.n, "values": " ".join(f"{v:.4f}" for v in c.values), "dataset_sha256": fp.get("sha256", "")}
