"""Specs + scale → the run plan: every distinct training run once, every evaluation
once, and the tables that consume them.

A run is a fully resolved training config (dataset, model, method and its
hyperparameters, training attack, schedule, selection, precision, seed). Its id is
a short hash of that config and of the source files it depends on, so a change to
the core code invalidates exactly the runs it affects, and the same config asked for
by two tables (or two papers) is one run. An evaluation is (run, protocol); a
protocol's id hashes its resolved settings and the evaluation code.

Planning imports neither torch nor the components: names are checked against the
lazy registries, which know their files. Every spec is validated here, before any
job starts.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

from . import layout, scales, specs
from .attacks import ATTACKS
from .data.catalog import DATASETS
from .errors import SpecError
from .methods import METHODS
from .models import MODELS, expand as expand_model
from .provenance import PACKAGE, source_hash
from .report import claims

# Source files every training run depends on; the model, method and attack files are added per run.
TRAIN_CODE = ["train.py", "optim.py", "precision.py", "checkpoint.py", "evaluate.py", "registry.py",
              "numbers.py", "fileio.py", "data", "models/__init__.py", "models/base.py",
              "methods/__init__.py", "methods/base.py", "attacks/__init__.py", "attacks/base.py"]
EVAL_CODE = ["evaluate.py", "checkpoint.py", "precision.py", "registry.py", "numbers.py", "fileio.py",
             "data", "attacks/__init__.py", "attacks/base.py", "models"]


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
    return source_hash(PACKAGE / p for p in relpaths)


def _package_version(name: str) -> str:
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


@dataclass
class Table:
    paper: str
    table: str
    stem: str
    spec: dict[str, Any]
    paper_spec: dict[str, Any]
    cells: list[Cell] = field(default_factory=list)

    @property
    def datasets(self) -> list[str]:
        return sorted({c.dataset for c in self.cells if c.evals})

    def eval_keys(self, datasets: set[str] | None = None) -> list[str]:
        return sorted({k for c in self.cells if datasets is None or c.dataset in datasets for k in c.evals})


def published_cells(spec: dict[str, Any]):
    """Yield (table, setting, row, column, value, std) for every transcribed number."""
    for tid, table in spec["tables"].items():
        columns = list(table["columns"])
        for sid, rows in table["published"].items():
            for rid, values in rows.items():
                for cid, v in zip(columns, values):
                    if v is None:
                        continue
                    value, std = (v[0], v[1]) if isinstance(v, list) else (v, None)
                    yield tid, sid, rid, cid, value, std


class Plan:
    def __init__(self, scale: str, papers: list[str] | None = None, overrides: dict[str, Any] | None = None):
        self.scale_name = scale
        self.scale = scales.load(scale)
        self.overrides = overrides or {}
        self.runs: dict[str, Run] = {}
        self.evals: dict[str, Evaluation] = {}
        self.tables: dict[str, Table] = {}
        self._memo: dict[tuple, Run | None] = {}
        for paper in papers or specs.names():
            self._add_paper(specs.load(paper))

    # ---- resolution -------------------------------------------------------------------
    def _recipe(self, spec: dict, name: str, chain: tuple[str, ...] = ()) -> dict:
        if name not in spec["recipes"]:
            raise SpecError(f"{spec['paper']}: unknown recipe {name!r}; known: {sorted(spec['recipes'])}")
        if name in chain:
            raise SpecError(f"{spec['paper']}: recipe inheritance cycle {' → '.join(chain + (name,))}")
        recipe = dict(spec["recipes"][name])
        base = recipe.pop("base", None)
        return deep_merge(self._recipe(spec, base, chain + (name,)), recipe) if base else recipe

    def _protocol(self, spec: dict, name: str) -> tuple[str, dict[str, Any]]:
        if name not in spec["protocols"]:
            raise SpecError(f"{spec['paper']}: unknown protocol {name!r}; known: {sorted(spec['protocols'])}")
        proto = copy.deepcopy(spec["protocols"][name])
        attack_name = ATTACKS.check(proto["attack"]["name"])
        sp = self.scale.get("protocols", {})
        for key in ("n_test", "batch_size"):
            if key in sp:
                proto[key] = sp[key]
        proto["attack"] = deep_merge(proto["attack"], sp.get(attack_name, {}))
        proto.setdefault("checkpoint", "best")
        proto.setdefault("n_test", None)
        code = code_version(EVAL_CODE + [f"attacks/{attack_name}.py"])
        impl = _package_version("pyautoattack") if attack_name == "autoattack" else "bench"
        return f"{name}-{short_hash(canonical(proto), code, impl, n=8)}", proto

    def _run(self, spec: dict, tid: str, sid: str, rid: str, seed: int) -> Run | None:
        key = (spec["paper"], tid, sid, rid, seed)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = None  # guards against reference cycles
        table = spec["tables"][tid]
        where = f"{spec['paper']}.{tid}"
        if rid not in table["rows"]:
            raise SpecError(f"{where}: unknown row {rid!r}; known: {sorted(table['rows'])}")
        setting, row = table["settings"][sid], table["rows"][rid]
        over = row.get("settings", {}).get(sid, {})
        if over == "skip":
            return None
        train = deep_merge(self._recipe(spec, setting["recipe"]), row.get("train", {}))
        train = deep_merge(train, over.get("train", {}))
        method = deep_merge(row["method"], over.get("method", {}))
        METHODS.check(method["name"])
        DATASETS.get(setting["dataset"])
        sc = self.scale

        model = expand_model(train["model"])
        model = {**model, **sc.get("models", {}).get(model["name"], {})}
        epochs = sc.get("epochs", train["epochs"])
        schedule = copy.deepcopy(train["schedule"])
        if "milestones" in schedule:  # rescale epoch-valued fields with the epoch budget
            schedule["milestones"] = [round(m * epochs / train["epochs"]) for m in schedule["milestones"]]
        selection = dict(train["selection"])
        sel_proto = selection.pop("protocol", None)
        selection["n_test"] = sc.get("selection", {}).get("n_test")
        if selection["metric"] == "robust":
            if sel_proto is None:
                raise SpecError(f"{where}: selection by robust accuracy needs a 'protocol'")
            _, proto = self._protocol(spec, sel_proto)
            selection["attack"] = deep_merge(proto["attack"], sc.get("selection", {}).get("attack", {}))
        data = {"source": sc["data"]["source"], "n_train": sc["data"].get("n_train")}
        if data["source"] == "synthetic":
            data["synthetic_size"] = sc["data"].get("synthetic_size", [512, 256])
        requires: dict[str, str] = {}
        for k, v in list(method.items()):
            if isinstance(v, dict) and set(v) == {"row"}:
                ref = self._run(spec, tid, sid, v["row"], seed)
                if ref is None:
                    raise SpecError(f"{where}: row {rid!r} needs row {v['row']!r} in setting {sid!r}, "
                                    f"which is skipped or circular")
                method[k] = requires[k] = ref.id
        config = {
            "dataset": setting["dataset"], "data": data, "model": model, "method": method,
            "attack": deep_merge(train["attack"], sc.get("attack", {})),
            "epochs": epochs, "batch_size": sc.get("batch_size", train["batch_size"]),
            "optimizer": train["optimizer"], "schedule": schedule, "selection": selection,
            "precision": {"amp": self.overrides.get("amp", "none"),
                          "channels_last": bool(self.overrides.get("channels_last", False))},
            "seed": seed,
        }
        attacks = {"pgd"} | ({selection["attack"]["name"]} if "attack" in selection else set())
        code = code_version(TRAIN_CODE + [f"models/{model['name']}.py", f"methods/{method['name']}.py"]
                            + [f"attacks/{a}.py" for a in sorted(attacks)])
        tag = train["model"] if isinstance(train["model"], str) else model["name"]
        run_id = f"{setting['dataset']}-{method['name']}-{tag}-s{seed}-{short_hash(canonical(config), code)}"
        run = self.runs.setdefault(run_id, Run(run_id, config, requires))
        self._memo[key] = run
        return run

    def _add_paper(self, spec: dict) -> None:
        paper = spec["paper"]
        for tid, table in spec["tables"].items():
            where = f"{paper}.{tid}"
            stem = layout.table_stem(self.scale_name, paper, tid)
            target = Table(paper, tid, stem, table, spec)
            columns = table["columns"]
            published = {(s, r, c): (v, sd) for t, s, r, c, v, sd in published_cells(spec) if t == tid}
            for sid, rows in table["published"].items():
                for rid, values in rows.items():
                    if sid not in table["settings"] or rid not in table["rows"]:
                        raise SpecError(f"{where}: published numbers for unknown setting/row {sid}/{rid}")
                    if len(values) != len(columns):
                        raise SpecError(f"{where}: published[{sid}][{rid}] has {len(values)} values "
                                        f"for {len(columns)} columns")
            protocols = {cid: self._protocol(spec, col["protocol"]) for cid, col in columns.items()}
            for sid, setting in table["settings"].items():
                for rid in table["rows"]:
                    runs = [self._run(spec, tid, sid, rid, seed) for seed in spec["aggregation"]["seeds"]]
                    for cid, col in columns.items():
                        pid, proto = protocols[cid]
                        keys = []
                        for run in runs:
                            if run is None:
                                continue
                            ev = self.evals.setdefault(f"{run.id}/{pid}", Evaluation(run.id, pid, proto))
                            keys.append(ev.key)
                        value, std = published.get((sid, rid, cid), (None, None))
                        target.cells.append(Cell(sid, rid, cid, setting["dataset"], col["metric"], keys,
                                                 value, std))
            for claim in table.get("claims", []):
                _, refs = claims.parse(claim["check"])
                for r, s, c in refs:
                    cell = next((x for x in target.cells if (x.row, x.setting, x.column) == (r, s, c)), None)
                    if cell is None or not cell.evals:
                        raise SpecError(f"{where}: claim {claim['id']!r} refers to {r}.{s}.{c}, "
                                        f"which is not a cell that runs (row.setting.column)")
            self.tables[stem] = target

    # ---- queries ----------------------------------------------------------------------
    def targets(self) -> list[str]:
        return sorted(f"{stem}.md" for stem in self.tables)

    def table(self, stem: str) -> Table:
        stem = stem.removesuffix(".md").removesuffix(".tex").removesuffix(".csv")
        if stem not in self.tables:
            raise SpecError(f"no target {stem!r} at scale {self.scale_name!r}; see `bench targets`")
        return self.tables[stem]

    def run(self, run_id: str) -> Run:
        if run_id not in self.runs:
            raise SpecError(f"run {run_id!r} is not in the {self.scale_name} plan (did the spec or code change?)")
        return self.runs[run_id]

    def evaluation(self, run_id: str, protocol_id: str) -> Evaluation:
        key = f"{run_id}/{protocol_id}"
        if key not in self.evals:
            raise SpecError(f"evaluation {key!r} is not in the {self.scale_name} plan")
        return self.evals[key]

    def resources(self, kind: str, run_id: str | None = None) -> dict[str, int]:
        res = dict(self.scale["resources"].get(kind, {}))
        per_epoch = res.pop("runtime_per_epoch", None)
        if per_epoch is not None and run_id is not None:
            res["runtime"] = int(per_epoch * self.run(run_id).config["epochs"]) + 10
        return res


def all_targets() -> list[str]:
    return sorted(t for s in scales.names() for t in Plan(s).targets())
