"""``bench explain <target> <cell>``: everything behind one cell of a table or figure — the
published number, the regenerated value and verdict, and for every seed the run (resolved
config, checkpoint digests, dataset fingerprint, runtime, provenance, log) and the
evaluation (resolved protocol, result, implementation, log)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import layout
from ..errors import SpecError
from ..fileio import read_json
from ..plan import Plan
from ..plan_model import Cell, Table


def find_cell(table: Table, ref: str) -> Cell:
    """``row.setting.column`` (the claims' notation) or ``row/setting/column``."""
    parts = ref.replace("/", ".").split(".")
    if len(parts) != 3:
        raise SpecError(f"cell {ref!r}: write row.setting.column (e.g. hat.cifar10.clean)")
    row, setting, column = parts
    for c in table.cells:
        if (c.row, c.setting, c.column) == (row, setting, column):
            return c
    known = sorted({f"{c.row}.{c.setting}.{c.column}" for c in table.cells})
    raise SpecError(f"{table.stem} has no cell {ref!r}; cells: {', '.join(known[:12])}{' …' if len(known) > 12 else ''}")


def _fp(fp: dict[str, Any] | None) -> str:
    if not fp:
        return "–"
    exact = {True: "exact original", False: "SUBSTITUTE", None: "unverified"}[fp.get("exact")]
    return (f"{fp.get('dataset')} from {fp.get('source')} ({exact}), train {fp.get('n_train')}/{fp.get('full_train')}, "
            f"sha256 {str(fp.get('sha256'))[:16]}")


def _short(obj: Any, width: int = 160) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return text if len(text) <= width else text[:width] + " …"


def explain(plan: Plan, target: str, ref: str, verbose: bool = False) -> str:
    table = plan.table(target)
    cell = find_cell(table, ref)
    agg = table.aggregation
    lines = [f"{table.stem} · {cell.row}.{cell.setting}.{cell.column} ({plan.scale_name} scale)",
             f"  row: {table.spec['rows'][cell.row]['label']}; setting: {table.spec['settings'][cell.setting]['label']};"
             f" column: {table.spec['columns'][cell.column]['label']} (metric {cell.metric})",
             "  published: " + ("–" if cell.published is None else f"{cell.published}"
                                + (f" ± {cell.std}" if cell.std is not None else ""))
             + f"; aggregation: {agg['stat']} over seeds {agg['seeds']}"]
    if cell.quoted:
        lines.append(f"  quoted by the paper from {cell.quoted}: not regenerated")
        return "\n".join(lines) + "\n"
    if cell.param is not None:
        lines.append(f"  a hyperparameter column: {cell.param} of the runs below")
    for run_id in cell.runs:
        run = plan.run(run_id)
        rdir = layout.run_dir(plan.scale_name, run_id)
        info_path = rdir / "run.json"
        lines.append(f"  run {run_id} (seed {run.config.get('seed')})  {rdir}/")
        cfg = run.config
        lines.append(f"    config: method {_short(cfg.get('method'))}; model {_short(cfg.get('model'))}; "
                     f"epochs {cfg.get('epochs')}; attack {_short(cfg.get('attack'))}")
        if verbose:
            lines.append("    resolved config: " + json.dumps(cfg, sort_keys=True, default=str))
        if run.requires:
            lines.append(f"    needs: {', '.join(f'{k}={v}' for k, v in sorted(run.requires.items()))}")
        if info_path.exists():
            info = read_json(info_path)
            lines.append(f"    dataset: {_fp(info.get('dataset'))}")
            if info.get("extra_dataset"):
                lines.append(f"    extra data: {_fp(info['extra_dataset'])}")
            if info.get("pretrained"):
                lines.append(f"    weights imported: {_short(info['pretrained'])}")
            lines.append(f"    checkpoints: {', '.join(f'{k} {v[:12]}' for k, v in sorted((info.get('checkpoints') or {}).items()))}"
                         f"; best {_short(info.get('best'))}")
            lines.append(f"    runtime: {_short(info.get('runtime'))}; environment: {_short(info.get('environment'))}")
            if info.get("throughput"):
                lines.append(f"    throughput: {info['throughput']['images_per_s']:.1f} training images/s")
        else:
            lines.append("    not trained yet" + (" (state.pt: interrupted, resumable)" if (rdir / "state.pt").exists() else ""))
        log = rdir / "train.log"
        lines.append(f"    log: {log}" + ("" if log.exists() else " (none yet)"))
    for key in cell.evals:
        ev = plan.evals[key]
        path = layout.eval_path(plan.scale_name, ev.run_id, ev.protocol_id)
        lines.append(f"  evaluation {key}")
        lines.append(f"    protocol: {_short(ev.protocol, 400 if verbose else 200)}")
        if path.exists():
            r = read_json(path)
            value = r
            for part in cell.metric.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            lines.append(f"    result: {cell.metric} = {value}; n = {r.get('n')}; checkpoint {_short(r.get('checkpoint'))}")
            lines.append(f"    test data: {_fp(r.get('dataset'))}")
            lines.append(f"    implementation: {r.get('implementation')}; environment: {_short(r.get('environment'))}")
            lines.append(f"    file: {path}")
        else:
            lines.append(f"    not evaluated yet ({path})")
        log = Path(str(path).removesuffix(".json") + ".log")
        if log.exists():
            lines.append(f"    log: {log}")
    return "\n".join(lines) + "\n"
