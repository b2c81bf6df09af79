"""Collect a table's evaluation results and aggregate seeds per cell."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import layout
from ..fileio import read_json
from ..plan import Cell, Plan, Table
from . import claims as claims_mod
from .verdicts import cell_verdict, param_verdict


@dataclass
class CellResult:
    cell: Cell
    values: list[float]
    mean: float | None
    std: float | None
    verdict: str
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def delta(self) -> float | None:
        if self.mean is None or self.cell.published is None:
            return None
        return self.mean - self.cell.published


@dataclass
class ClaimResult:
    id: str
    text: str
    check: str
    regenerated: bool | None
    published: bool | None


@dataclass
class TableResult:
    table: Table
    scale: str
    cells: list[CellResult]
    claims: list[ClaimResult]
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)     # name → fingerprint
    implementations: list[str] = field(default_factory=list)
    environments: list[dict[str, Any]] = field(default_factory=list)
    budgets: dict[str, str] = field(default_factory=dict)                 # setting → budget text
    missing: dict[str, str] = field(default_factory=dict)                 # dataset → reason
    throughput: dict[tuple[str, str], float] = field(default_factory=dict)  # (row, setting) → images/s


def _stat(values: list[float], stat: str) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    centre = statistics.fmean(values) if stat == "mean" else statistics.median(values)
    return centre, (statistics.stdev(values) if len(values) > 1 else None)


def lookup(config: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(config, dict) or part not in config:
            return None
        config = config[part]
    return config


def _param_cell(plan: Plan, cell: Cell) -> CellResult:
    """A hyperparameter as the planned runs use it, against the published value."""
    values = sorted({lookup(plan.run(r).config, cell.param) for r in cell.runs} - {None})
    if len(values) > 1:
        raise ValueError(f"{cell.param} differs between the seeds of {cell.row}/{cell.setting}: {values}")
    value = float(values[0]) if values else None
    return CellResult(cell, [value] if values else [], value, None, param_verdict(value, cell.published))


def collect(plan: Plan, table: Table, missing: dict[str, str] | None = None) -> TableResult:
    """Read every available evaluation of ``table``; datasets in ``missing`` render as not run."""
    missing = missing or {}
    results: dict[str, dict] = {}
    for key in table.eval_keys():
        ev = plan.evals[key]
        if plan.run(ev.run_id).dataset in missing:
            continue
        path = layout.eval_path(plan.scale_name, ev.run_id, ev.protocol_id)
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} is missing: evaluate {key} first (snakemake builds it)")
        results[key] = read_json(path)

    paper_scale = plan.scale_name == layout.PAPER_SCALE
    stat = table.aggregation["stat"]
    out = TableResult(table, plan.scale_name, [], [], missing=missing)
    for cell in table.cells:
        if cell.param is not None:
            out.cells.append(_param_cell(plan, cell))
            continue
        got = [results[k] for k in cell.evals if k in results]
        values = [r[cell.metric] for r in got]
        mean, std = _stat(values, stat)
        exact = all(r["train_dataset"].get("exact") is not False for r in got)
        verdict = cell_verdict(planned=bool(cell.evals), mean=mean, std=std, published=cell.published,
                               std_pub=cell.std, paper_scale=paper_scale, exact_data=exact)
        note = f"dataset {cell.dataset} absent" if cell.dataset in missing and cell.evals else ""
        out.cells.append(CellResult(cell, values, mean, std, verdict, note))
        for r in got:
            out.datasets[r["train_dataset"]["dataset"]] = r["train_dataset"]
            out.implementations.append(r.get("implementation", "?"))
            out.environments.append(r.get("environment", {}))
    out.implementations = sorted(set(out.implementations))

    for sid in table.spec["settings"]:
        runs = {plan.evals[k].run_id for c in table.cells if c.setting == sid for k in c.evals}
        epochs = sorted({plan.run(r).config["epochs"] for r in runs})
        if runs:
            models = sorted({plan.run(r).config["model"]["name"] + "(" + ",".join(
                f"{k}={v}" for k, v in plan.run(r).config["model"].items() if k != "name") + ")" for r in runs})
            out.budgets[sid] = f"{'/'.join(map(str, epochs))} epochs, {'; '.join(models)}"

    for c in out.cells:
        runs = {results[k]["run_id"] for k in c.cell.evals if k in results}
        if runs and (c.cell.row, c.cell.setting) not in out.throughput:
            speeds = [read_json(layout.run_dir(plan.scale_name, r) / "run.json")["throughput"]["images_per_s"]
                      for r in sorted(runs)]
            out.throughput[(c.cell.row, c.cell.setting)] = statistics.fmean(speeds)

    regen = {(c.cell.row, c.cell.setting, c.cell.column): c.mean for c in out.cells}
    pub = {(c.cell.row, c.cell.setting, c.cell.column): c.cell.published for c in out.cells}
    for claim in table.spec.get("claims", []):
        out.claims.append(ClaimResult(claim["id"], claim["text"], " ".join(claim["check"].split()),
                                      claims_mod.evaluate(claim["check"], regen),
                                      claims_mod.evaluate(claim["check"], pub)))
    return out
