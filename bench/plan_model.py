"""The plan's data model and the spec helpers the reports share with it: identities (canonical
JSON, short hashes, source versions), runs, evaluations, cells and targets, sweeps, and the
published and quoted numbers of a spec. bench/plan.py builds these from the specs."""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from typing import Any

from .errors import SpecError
from .provenance import PACKAGE, source_hash


def deep_merge(base: Any, over: Any) -> Any:
    """``over`` merged into a copy of ``base``; dicts merge recursively, anything else replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = copy.deepcopy(base)
        for k, v in over.items():
            out[k] = deep_merge(out[k], v) if k in out else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def short_hash(*parts: str, n: int = 10) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:n]


def code_version(relpaths: list[str]) -> str:
    return _code_version(frozenset(relpaths))


@lru_cache(maxsize=None)
def _code_version(relpaths: frozenset[str]) -> str:   # a plan asks for the same few sets thousands of times
    return source_hash(PACKAGE / p for p in relpaths)


def package_version(name: str) -> str:
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"{name} (not installed)"


@dataclass
class Run:
    id: str
    config: dict[str, Any]
    requires: dict[str, str]  # helper role → run id

    @property
    def dataset(self) -> str:
        return self.config["dataset"]


@dataclass
class Evaluation:
    run_id: str
    protocol_id: str
    protocol: dict[str, Any]
    requires: dict[str, str] = field(default_factory=dict)  # helper role → run id (measures)

    @property
    def key(self) -> str:
        return f"{self.run_id}/{self.protocol_id}"


@dataclass
class Cell:
    setting: str
    row: str
    column: str
    dataset: str
    metric: str
    evals: list[str]          # Evaluation keys, one per seed; empty when the paper has no such cell
    published: float | None
    std: float | None
    runs: list[str] = field(default_factory=list)   # the runs behind the cell, one per seed
    param: str | None = None  # a hyperparameter column: dotted path into the run config
    data: list[str] = field(default_factory=list)   # further data: its protocol's (CIFAR-10-C), its runs' extra
                                                    # training data and imported checkpoints
    quoted: str | None = None  # a row the paper quotes from earlier work: its source (no run, no regeneration)
    declared: str | None = None  # a declaration column: the key of the row's method's declaration (HE Table 1)
    note: str | None = None      # why a planned cell has no evaluation at this scale (the scale skips its protocol)

    @property
    def datasets(self) -> set[str]:
        return {self.dataset, *self.data}


TARGET_SUFFIXES = {".md", ".tex", ".csv", ".png", ".pdf"}


@dataclass
class Table:
    """A table or figure target: cells (row × setting × column) and what renders them."""
    paper: str
    table: str
    stem: str
    spec: dict[str, Any]
    paper_spec: dict[str, Any]
    kind: str = "table"  # "table" | "figure"
    seeds: int | None = None  # the scale's cap on seeds per cell (None: the paper's)
    cells: list[Cell] = field(default_factory=list)

    @property
    def target(self) -> str:
        return self.stem + (".md" if self.kind == "table" else ".png")

    @property
    def aggregation(self) -> dict[str, Any]:
        agg = {**self.paper_spec["aggregation"], **self.spec.get("aggregation", {})}
        return {**agg, "seeds": agg["seeds"][:self.seeds]}

    def setting_seeds(self, sid: str) -> list[int]:
        """The seeds of a setting's cells: its own ``seeds`` (a setting the paper ran once,
        e.g. FAT's WRN-58-10) or the table's, capped by the scale."""
        own = self.spec["settings"][sid].get("seeds")
        return self.aggregation["seeds"] if own is None else own[:self.seeds]

    @property
    def datasets(self) -> list[str]:
        return sorted({d for c in self.cells if c.evals for d in c.datasets})

    @property
    def planned(self) -> bool:
        return any(c.runs for c in self.cells)

    def eval_keys(self, datasets: set[str] | None = None) -> list[str]:
        """The evaluations of the cells whose datasets are all in ``datasets`` (default: all)."""
        return sorted({k for c in self.cells if datasets is None or c.datasets <= datasets for k in c.evals})


def snapshot_epoch(paper_epoch: int, config: dict[str, Any]) -> int:
    """A snapshot epoch of the paper's budget, at the run's budget (as train.snapshots)."""
    return max(1, round(paper_epoch * config["epochs"] / config.get("paper_epochs", config["epochs"])))


def _sweep_id(value: Any) -> str:
    return str(value).replace(".", "p").replace("/", "_").replace("-", "m")


def expand_sweeps(rows: dict[str, Any], where: str) -> dict[str, Any]:
    """A row with ``sweep: {param: method.beta, values: [...], label: "β={}"}`` becomes
    one row per value, ``<row>_<value>`` (dots as "p": ``trades_1p0``), in order, each
    remembering its ``group`` (the original row) and ``value``."""
    out: dict[str, Any] = {}
    for rid, row in rows.items():
        if "sweep" not in row:
            out[rid] = row
            continue
        sweep = row["sweep"]
        path = sweep["param"].split(".")
        if path[0] not in ("method", "train") or len(path) < 2:
            raise SpecError(f"{where}: row {rid!r} sweeps {sweep['param']!r}; sweep a method.* or train.* path")
        for value in sweep["values"]:
            new = copy.deepcopy({k: v for k, v in row.items() if k != "sweep"})
            node = new.setdefault(path[0], {})
            for part in path[1:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
            new.update(label=sweep.get("label", row["label"] + " {}").format(value), group=rid, value=value)
            out[f"{rid}_{_sweep_id(value)}"] = new
    return out


def setting_attack(setting: dict[str, Any]) -> dict[str, Any]:
    """The attack overrides a setting implies: its ``eps`` (training, selection and evaluation)."""
    return {"eps": setting["eps"]} if "eps" in setting else {}


def fill(text: str, setting: dict[str, Any], where: str) -> str:
    """A column's protocol or metric with the setting's ``vars`` filled in ("{severity}")."""
    try:
        return text.format(**setting.get("vars", {}))
    except (KeyError, IndexError, ValueError) as e:
        raise SpecError(f"{where}: {text!r} names {e} but setting {setting.get('label')!r} has vars "
                        f"{sorted(setting.get('vars', {}))}") from None


def published_cells(spec: dict[str, Any]):
    """Yield (table, setting, row, column, value, std) for every transcribed number."""
    for tid, table in {**spec["tables"], **spec.get("figures", {})}.items():
        columns = list(table["columns"])
        for sid, rows in table.get("published", {}).items():
            for rid, values in rows.items():
                for cid, v in zip(columns, values):
                    if v is None:
                        continue
                    value, std = (v[0], v[1]) if isinstance(v, list) else (v, None)
                    yield tid, sid, rid, cid, value, std


def quoted_rows(spec: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(table, row) → source, for the rows a paper quotes from earlier work (``quoted``)."""
    targets = {**spec["tables"], **spec.get("figures", {})}
    out = {}
    for tid, table in targets.items():
        rows = table.get("rows") or targets.get(table.get("like"), {}).get("rows", {})
        out.update({(tid, rid): row["quoted"]["source"] for rid, row in rows.items() if "quoted" in row})
    return out
