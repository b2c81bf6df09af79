"""Collect a table's evaluation results and aggregate seeds per cell."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import layout
from ..errors import BenchError
from ..fileio import read_json
from ..plan import Plan
from ..plan_model import Cell, Table, published_cells
from . import claims as claims_mod
from .verdicts import (ABSENT, CITED, DECLARED, DIFFERS, HARDWARE, REPRODUCED, cell_verdict,
                       param_verdict)


@dataclass
class CellResult:
    cell: Cell
    values: list[float]
    mean: float | None
    std: float | None
    verdict: str
    note: str = ""
    exact: bool = True        # computed on exact (not substitute) data
    reason: str = ""          # why there is no mean although results exist, e.g. "NaN"
    text: str | None = None   # a declaration cell's text (HE Table 1: the objectives)

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
    budget: str = ""          # scale and training budget the regenerated verdict was checked at
    reason: str = "not run"   # why ``regenerated`` is None: a cell not run, NaN, division by zero …
    published_reason: str = "not printed"   # why ``published`` is None


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
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)          # displayed rows
    imported: list[str] = field(default_factory=list)                      # weights of models not trained here
    compute: dict[str, Any] = field(default_factory=dict)                  # measured hours behind the table
    hardware: dict[str, list[str]] = field(default_factory=dict)           # "training" / "evaluation" → devices


def device_name(env: dict[str, Any] | None) -> str:
    """The device a job ran on, from its recorded environment."""
    env = env or {}
    return env.get("cuda_device") or (f"CPU ({env['cpu']})" if env.get("cpu") else "CPU")


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


def _origin(pretrained: dict[str, Any]) -> str:
    """Where an imported model's weights came from (its run.json), for the report header."""
    facts = [f"sha256 {pretrained['sha256'][:16]}"] if "sha256" in pretrained else []
    if "robustbench" in pretrained:
        facts.append(f"robustbench {pretrained['robustbench']}")
    return pretrained["weights"] + (f" ({', '.join(facts)})" if facts else "")


def training_budget(configs: list[dict[str, Any]]) -> str:
    """The training budget of a setting's runs, as the report header and claim verdicts state it."""
    join = lambda values: "/".join(map(str, sorted(set(values), key=str)))
    trained = [c for c in configs if "pretrained" not in c]
    parts = []
    if trained:
        models = join(c["model"]["name"] + "(" + ",".join(f"{k}={v}" for k, v in c["model"].items()
                                                          if k != "name") + ")" for c in trained)
        images = join(c["data"].get("n_train") or "all" for c in trained)
        extra = join(f" + {e['n'] or 'all'} extra images ({e['dataset']}, {e['fraction']:g} of every batch)"
                     for e in (c["data"].get("extra") for c in trained) if e)
        steps = join(_training_attack(c) for c in trained)
        parts.append(f"{join(c['epochs'] for c in trained)} epochs on {images} training images{extra}, "
                     f"training attack {steps}, {models}")
    for c in configs:
        if "pretrained" in c:
            p = c["pretrained"]
            name = f"RobustBench {p['robustbench']}" if "robustbench" in p else p["file"]
            parts.append(f"{name} evaluated without training" + (" (random weights: a stand-in at this scale)"
                                                                 if p.get("weights") == "random" else ""))
    return "; ".join(parts)


def _training_attack(config: dict[str, Any]) -> str:
    """The training attack a run's method runs, briefly ("10-step pgd", "fgsm_rs", "none")."""
    from ..methods import METHODS

    attack = METHODS.get(config["method"]["name"]).training_attack(config["attack"])
    if attack is None:
        return f"none ({config['method']['name']})"
    return f"{attack['steps']}-step {attack['name']}" if "steps" in attack else attack["name"]


def _param_cell(plan: Plan, cell: Cell) -> CellResult:
    """A hyperparameter as the planned runs use it, against the published value."""
    values = sorted({lookup(plan.run(r).config, cell.param) for r in cell.runs} - {None})
    if len(values) > 1:
        raise ValueError(f"{cell.param} differs between the seeds of {cell.row}/{cell.setting}: {values}")
    value = float(values[0]) if values else None
    return CellResult(cell, [value] if values else [], value, None, param_verdict(value, cell.published))


def _declared_cell(plan: Plan, cell: Cell) -> CellResult:
    """What the row's method declares under ``cell.declared`` for its run config (e.g. its
    training objective with and without HE), as text."""
    from ..methods import METHODS

    texts = sorted({METHODS.get(plan.run(r).config["method"]["name"]).declaration(plan.run(r).config)
                   .get(cell.declared, "–") for r in cell.runs}) or ["–"]
    return CellResult(cell, [], None, None, DECLARED, text=" / ".join(texts))


def _match(table: Table, out: TableResult) -> None:
    """Replace each sweep by its member whose ``by`` column is closest to the ``to`` row's
    (e.g. HAT Table 6: the TRADES and HAT models as robust as AT), per setting."""
    by, to = table.spec["match"]["by"], table.spec["match"].get("to")
    highest = table.spec["match"].get("rule", "closest") == "max"   # e.g. BAT Table B.3: the best β
    rows = table.spec["rows"]
    cells = {(c.cell.row, c.cell.setting, c.cell.column): c for c in out.cells}
    published = {(s, r, c): (v, sd) for t, s, r, c, v, sd in published_cells(table.paper_spec) if t == table.table}
    groups: dict[str, list[str]] = {}
    for rid, row in rows.items():
        if "group" in row:
            groups.setdefault(row["group"], []).append(rid)
    kept = [c for c in out.cells if "group" not in rows[c.cell.row]]
    out.rows = {rid: row for rid, row in rows.items() if "group" not in row}
    for group, members in groups.items():
        for sid in table.spec["settings"]:
            if highest:
                scored = [(-cells[(m, sid, by)].mean, m) for m in members if cells[(m, sid, by)].mean is not None]
            else:
                ref = cells[(to, sid, by)].mean
                scored = [(abs(cells[(m, sid, by)].mean - ref), m) for m in members
                          if ref is not None and cells[(m, sid, by)].mean is not None]
            chosen = min(scored)[1] if scored else None
            how = f"highest {by}" if highest else f"{by} closest to {rows[to]['label']}'s" if to else ""
            note = f"{rows[chosen]['label']}: {how}" if chosen else "no member measured yet"
            for cid in table.spec["columns"]:
                src = cells[(chosen or members[0], sid, cid)]
                value, std = published.get((sid, group, cid), (None, None))
                cell = replace(src.cell, row=group, published=value, std=std)
                mean = src.mean if chosen else None
                verdict = cell_verdict(planned=True, mean=mean, std=src.std, published=value, std_pub=std,
                                       paper_scale=out.scale == layout.PAPER_SCALE, exact_data=src.exact)
                kept.append(CellResult(cell, src.values if chosen else [], mean, src.std if chosen else None,
                                       verdict, note, src.exact))
            out.rows[group] = {"label": rows[members[0]].get("series", group)}
    out.cells = kept


def _bound(path: Path, result: dict[str, Any], ev, run_info: dict[str, Any], helper_infos: dict[str, dict]) -> None:
    """An evaluation result is used only if it belongs to this run and protocol, read the
    checkpoints the runs hold now, and was computed on the data the run was trained on."""
    def stale(why: str) -> BenchError:
        return BenchError(f"{path} {why}: it was not computed from what the plan expects; remove it and rerun")

    if (result.get("run_id"), result.get("protocol_id")) != (ev.run_id, ev.protocol_id):
        raise stale(f"holds run {result.get('run_id')!r} / protocol {result.get('protocol_id')!r}, "
                    f"not {ev.run_id!r} / {ev.protocol_id!r}")
    trained = run_info["dataset"]
    if (result.get("train_dataset") or {}).get("sha256") != trained.get("sha256"):
        raise stale("records other training data than its run's run.json")
    test = result.get("dataset")
    if test is not None and (test.get("sha256"), test.get("source")) != (trained.get("sha256"), trained.get("source")):
        raise stale(f"was computed on {test.get('source')} (sha256 {str(test.get('sha256'))[:16]}), not on the data "
                    f"the run was trained on ({trained.get('source')}, sha256 {str(trained.get('sha256'))[:16]})")
    ck = result.get("checkpoint")
    if ck is not None and ck.get("sha256") != (run_info.get("checkpoints") or {}).get(ck.get("which")):
        raise stale(f"evaluated a {ck.get('which')}.pt that is not the one run {ev.run_id} holds now")
    for role, h in (result.get("helpers") or {}).items():
        if h.get("sha256") != (helper_infos[h["run"]].get("checkpoints") or {}).get(h.get("checkpoint")):
            raise stale(f"used a helper model ({role}: run {h['run']}) that is not the one that run holds now")


def _check_datasets(plan: Plan, table: Table, results: dict[str, dict], run_infos: dict[str, dict]) -> None:
    """A table never mixes datasets: every cell of a dataset has one fingerprint, the one the
    data root holds now."""
    from ..data.store import current_fingerprint

    seen: dict[str, dict[str, list[str]]] = {}
    for key, r in results.items():
        fp = run_infos[r["run_id"]]["dataset"]
        seen.setdefault(fp["dataset"], {}).setdefault(f"{fp.get('source')} sha256 {fp.get('sha256')}", []).append(key)
    for name, variants in seen.items():
        if len(variants) > 1:
            listed = "; ".join(f"{v[:40]}…: {', '.join(sorted(keys)[:3])}" for v, keys in variants.items())
            raise BenchError(f"{table.stem}: the cells of {name} were computed on different data ({listed}); "
                             f"remove the runs that do not match the data root and rerun")
        (variant, keys), = variants.items()
        run_cfg = plan.run(results[keys[0]]["run_id"]).config
        now = current_fingerprint(run_cfg)
        if f"{now.get('source')} sha256 {now.get('sha256')}" != variant:
            runs = sorted({results[k]["run_id"] for k in keys})
            raise BenchError(f"{table.stem}: runs {', '.join(runs[:3])}{' …' if len(runs) > 3 else ''} were trained on "
                             f"{name} {variant[:60]}…, but the data root now holds {now.get('source')} (sha256 "
                             f"{str(now.get('sha256'))[:16]}); remove those run folders to retrain on the current "
                             f"data, or restore the data they were trained on")


def collect(plan: Plan, table: Table, missing: dict[str, str] | None = None) -> TableResult:
    """Read every available evaluation of ``table``; datasets in ``missing`` render as not run.
    Every result is checked against the run and data that should have produced it."""
    missing = missing or {}
    results: dict[str, dict] = {}
    run_infos: dict[str, dict] = {}

    def info(run_id: str) -> dict:
        if run_id not in run_infos:
            run_infos[run_id] = read_json(layout.run_dir(plan.scale_name, run_id) / "run.json")
        return run_infos[run_id]

    for key in table.eval_keys(set(table.datasets) - set(missing)):
        ev = plan.evals[key]
        path = layout.eval_path(plan.scale_name, ev.run_id, ev.protocol_id)
        if not Path(path).exists():
            raise BenchError(f"{path} is missing: evaluate {key} first (snakemake builds it)")
        results[key] = read_json(path)
        _bound(path, results[key], ev, info(ev.run_id), {r: info(r) for r in ev.requires.values()})
    _check_datasets(plan, table, results, run_infos)

    paper_scale = plan.scale_name == layout.PAPER_SCALE
    stat = table.aggregation["stat"]
    out = TableResult(table, plan.scale_name, [], [], missing=missing)
    for cell in table.cells:
        if cell.param is not None:
            out.cells.append(_param_cell(plan, cell))
            continue
        if cell.declared is not None:
            out.cells.append(_declared_cell(plan, cell))
            continue
        if cell.quoted:   # quoted from earlier work: the paper's number, never regenerated
            out.cells.append(CellResult(cell, [], None, None, CITED if cell.published is not None else ABSENT,
                                        f"cited: {cell.quoted}"))
            continue
        got = [results[k] for k in cell.evals if k in results]
        values = [v for v in (lookup(r, cell.metric) for r in got) if v is not None]   # None: not measurable
        bad = sorted({str(v) for v in values if not math.isfinite(v)})   # a NaN/inf result is never a number
        values = [] if bad else values
        mean, std = _stat(values, stat)
        exact = all(r["train_dataset"].get("exact") is not False for r in got)
        verdict = cell_verdict(planned=bool(cell.evals), mean=mean, std=std, published=cell.published,
                               std_pub=cell.std, paper_scale=paper_scale, exact_data=exact)
        if table.spec["columns"][cell.column].get("hardware") and verdict in (REPRODUCED, DIFFERS):
            verdict = HARDWARE    # e.g. training minutes on the paper's GPUs: only ratios are claimed
        absent = sorted(cell.datasets & set(missing))
        note = f"{', '.join(absent)} absent" if absent and cell.evals else (cell.note or "")
        if bad:
            note = f"a result is {'/'.join(bad)}"
        out.cells.append(CellResult(cell, values, mean, std, verdict, note, exact, reason="/".join(bad)))
        for r in got:
            fp = out.datasets.setdefault(r["train_dataset"]["dataset"], {**r["train_dataset"], "tested": []})
            if r.get("n") is not None and r["n"] not in fp["tested"]:   # test images the evaluations used (per protocol)
                fp["tested"] = sorted(fp["tested"] + [r["n"]])
            if r.get("extra_dataset"):
                out.datasets.setdefault(r["extra_dataset"]["dataset"],
                                        {**r["extra_dataset"], "tested": [], "role": "extra training data"})
            if r.get("pretrained"):
                out.imported.append(_origin(r["pretrained"]))
            out.implementations.append(r.get("implementation", "?"))
            out.environments.append(r.get("environment", {}))
    out.compute = {"train_hours": math.fsum(i.get("train_seconds") or 0.0 for i in run_infos.values()) / 3600,
                   "eval_hours": math.fsum(r.get("seconds") or 0.0 for r in results.values()) / 3600,
                   "runs": len(run_infos), "evaluations": len(results),
                   "devices": sorted({r.get("device", "?") for r in results.values() if r.get("device")}
                                     | {(e.get("environment") or {}).get("cuda_device", "CPU") for e in run_infos.values()
                                        if e.get("train_seconds")})}
    out.implementations = sorted(set(out.implementations))
    out.imported = sorted(set(out.imported))

    for sid in table.spec["settings"]:
        configs = [plan.run(r).config for r in sorted({r for c in table.cells if c.setting == sid for r in c.runs})]
        if configs:
            out.budgets[sid] = training_budget(configs)

    for c in out.cells:
        runs = {results[k]["run_id"] for k in c.cell.evals if k in results}
        if runs and (c.cell.row, c.cell.setting) not in out.throughput:
            infos = [read_json(layout.run_dir(plan.scale_name, r) / "run.json") for r in sorted(runs)]
            speeds = [i["throughput"]["images_per_s"] for i in infos if i["throughput"]]   # none: not trained here
            out.hardware.setdefault("training", [])
            out.hardware["training"] += [device_name(i.get("environment")) for i in infos if i["throughput"]]
            if speeds:
                out.throughput[(c.cell.row, c.cell.setting)] = statistics.fmean(speeds)

    out.hardware["evaluation"] = [device_name(e) for e in out.environments if e]
    out.hardware = {k: sorted(set(v)) for k, v in out.hardware.items() if v}
    out.rows = dict(table.spec["rows"])
    if "match" in table.spec:
        _match(table, out)

    # claims read quoted cells as the numbers the paper quotes; a NaN/inf cell as NaN (not run, with the reason)
    regen = {(c.cell.row, c.cell.setting, c.cell.column):
             c.cell.published if c.cell.quoted else math.nan if c.reason else c.mean for c in out.cells}
    pub = {(c.cell.row, c.cell.setting, c.cell.column): c.cell.published for c in out.cells}
    for claim in table.spec.get("claims", []):
        _, refs = claims_mod.parse(claim["check"])
        sids = [sid for sid in dict.fromkeys(s for _, s, _ in refs) if sid in out.budgets]
        budget = (f"{', '.join(table.spec['settings'][sid]['label'] for sid in sids)}: {out.budgets[sids[0]]}"
                  if sids and len({out.budgets[sid] for sid in sids}) == 1 else
                  "; ".join(f"{table.spec['settings'][sid]['label']}: {out.budgets[sid]}" for sid in sids))
        regenerated, reason = claims_mod.check(claim["check"], regen)
        published, published_reason = claims_mod.check(claim["check"], pub)
        out.claims.append(ClaimResult(claim["id"], claim["text"], " ".join(claim["check"].split()),
                                      regenerated, published, f"{plan.scale_name} scale; {budget}", reason,
                                      "not printed" if published_reason == claims_mod.NOT_RUN else published_reason))
    return out
