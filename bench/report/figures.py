"""Figures: one plotter per kind of plot, chosen by a figure spec's ``plot.kind``.

A plotter receives the aggregated cells (and the plan, to load a run's checkpoint where
the figure shows a model rather than numbers) and returns the matplotlib figure and the
rows of data it plots; :func:`draw` writes ``.png``, ``.pdf`` and that data as ``.csv``,
all atomically.
"""
from __future__ import annotations

import csv
import io
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .. import layout  # noqa: E402
from ..errors import SpecError  # noqa: E402
from ..fileio import atomic_write, write_text  # noqa: E402
from ..plan import Plan  # noqa: E402
from .aggregate import TableResult  # noqa: E402

Plotter = Callable[[Plan, TableResult, dict[str, Any]], tuple[Any, list[dict[str, Any]]]]
PLOTTERS: dict[str, Plotter] = {}


def plotter(name: str):
    def add(fn: Plotter) -> Plotter:
        PLOTTERS[name] = fn
        return fn
    return add


def _cell(res: TableResult, row: str, setting: str, column: str):
    return next(c for c in res.cells if (c.cell.row, c.cell.setting, c.cell.column) == (row, setting, column))


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}%"


@plotter("decision_regions")
def decision_regions(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Predicted class on 2-D slices of a low-dimensional input space, one row of panels
    per table row (first seed's selected checkpoint), test points near each slice on top.
    Options: planes: [{axes: [i, j], fixed: {k: value}, limits: [[lo, hi], [lo, hi]]}],
    resolution (200), near (distance to the slice for showing test points, 0.05)."""
    import torch

    from .. import checkpoint
    from ..data.store import load_for_run

    spec = res.table.spec
    planes, n, near = opts["planes"], opts.get("resolution", 200), opts.get("near", 0.05)
    rows = list(spec["rows"])
    fig, axes = plt.subplots(len(rows), len(planes), figsize=(4.2 * len(planes), 3.8 * len(rows)), squeeze=False)
    data: list[dict[str, Any]] = []
    for i, rid in enumerate(rows):
        clean_cell = next(c for c in res.cells if c.cell.row == rid and c.cell.metric == "clean")
        robust_cell = next(c for c in res.cells if c.cell.row == rid and c.cell.metric == "robust")
        run_id = clean_cell.cell.runs[0]
        model, _ = checkpoint.load(layout.run_dir(plan.scale_name, run_id) / "best.pt", torch.device("cpu"))
        test = load_for_run(plan.run(run_id).config).test
        for j, plane in enumerate(planes):
            a, b = plane["axes"]
            (xlo, xhi), (ylo, yhi) = plane["limits"]
            gx, gy = torch.meshgrid(torch.linspace(xlo, xhi, n), torch.linspace(ylo, yhi, n), indexing="xy")
            pts = torch.zeros(n * n, test.x.shape[1])
            for k, v in plane["fixed"].items():
                pts[:, int(k)] = v
            pts[:, a], pts[:, b] = gx.reshape(-1), gy.reshape(-1)
            with torch.no_grad():
                pred = model(pts).argmax(1)
            ax = axes[i][j]
            ax.contourf(gx, gy, pred.view(n, n).float(), levels=[-0.5, 0.5, 1.5], colors=["#cfe2f3", "#f4cccc"])
            mask = torch.ones(len(test.y), dtype=torch.bool)
            for k, v in plane["fixed"].items():
                mask &= (test.x[:, int(k)] - v).abs() < near
            for label, color in ((0, "#1f4e79"), (1, "#990000")):
                sel = mask & (test.y == label)
                ax.scatter(test.x[sel, a], test.x[sel, b], s=6, c=color, label=f"class {label + 1}")
            fixed = ", ".join(f"x{int(k) + 1}={v}" for k, v in plane["fixed"].items())
            ax.set_xlabel(f"x{a + 1}")
            ax.set_ylabel(f"x{b + 1}")
            ax.set_title(f"{spec['rows'][rid]['label']} ({fixed})\nclean {_fmt(clean_cell.mean)}, "
                         f"robust {_fmt(robust_cell.mean)}", fontsize=9)
            data += [{"row": rid, "plane": j, f"x{a + 1}": float(x), f"x{b + 1}": float(y), "prediction": int(p)}
                     for x, y, p in zip(pts[:, a], pts[:, b], pred)]
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig, data


@plotter("setting_curve")
def setting_curve(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Each column against the settings' ``x`` (e.g. the training-and-test ε), one colour per
    row; the first column dotted, the others solid (BAT Fig. 3: clean dotted, robust
    solid). Options: xlabel, ylabel."""
    spec = res.table.spec
    sids = sorted(spec["settings"], key=lambda s: spec["settings"][s]["x"])
    xs = [spec["settings"][s]["x"] for s in sids]
    fig, ax = plt.subplots(figsize=(5, 3.8))
    data = []
    for i, rid in enumerate(spec["rows"]):
        color = f"C{i}"
        for j, cid in enumerate(spec["columns"]):
            cells = [_cell(res, rid, s, cid) for s in sids]
            ys = [float("nan") if c.mean is None else c.mean for c in cells]
            es = [c.std or 0.0 for c in cells]
            label = f"{spec['rows'][rid]['label']} ({spec['columns'][cid]['label']})"
            ax.errorbar(xs, ys, yerr=es, color=color, ls=":" if j == 0 else "-", marker="o", ms=3, capsize=2,
                        label=label)
            data += [{"row": rid, "column": cid, "x": x, "y": y, "std": e} for x, y, e in zip(xs, ys, es)]
    ax.set_xlabel(opts.get("xlabel", "x"))
    ax.set_ylabel(opts.get("ylabel", "accuracy (%)"))
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig, data


@plotter("curve")
def curve(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """A metric against the columns' ``x`` for each row, or ``difference: [a, b]`` (row a
    minus row b) with its ± from the seeds' standard deviations. Options: xlabel, ylabel,
    marker_x (a vertical dashed line, e.g. the training ε), xscale (multiplies x)."""
    spec = res.table.spec
    sid = next(iter(spec["settings"]))
    cols = sorted(spec["columns"], key=lambda c: spec["columns"][c]["x"])
    xs = [spec["columns"][c]["x"] * opts.get("xscale", 1.0) for c in cols]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    data = []
    series = [tuple(opts["difference"])] if "difference" in opts else [(r, None) for r in spec["rows"]]
    for a, b in series:
        ys, es = [], []
        for c in cols:
            ca = _cell(res, a, sid, c)
            cb = _cell(res, b, sid, c) if b else None
            if ca.mean is None or (cb is not None and cb.mean is None):
                ys.append(float("nan")), es.append(0.0)
                continue
            ys.append(ca.mean - (cb.mean if cb else 0.0))
            es.append(((ca.std or 0.0) ** 2 + ((cb.std or 0.0) if cb else 0.0) ** 2) ** 0.5)
        label = (f"{spec['rows'][a]['label']} − {spec['rows'][b]['label']}" if b else spec["rows"][a]["label"])
        ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2, label=label)
        data += [{"series": label, "x": x, "y": y, "std": e} for x, y, e in zip(xs, ys, es)]
    if "marker_x" in opts:
        ax.axvline(opts["marker_x"], color="red", ls="--", lw=1)
    if "difference" in opts:
        ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel(opts.get("xlabel", "x"))
    ax.set_ylabel(opts.get("ylabel", "y"))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, data


@plotter("tradeoff")
def tradeoff(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Accuracy against robustness: one point per row, sweeps of a row joined in sweep
    order and annotated with the swept value. Options: x (column, "clean"), y (column,
    "robust"), xlabel, ylabel."""
    spec = res.table.spec
    sid = next(iter(spec["settings"]))
    xc, yc = opts.get("x", "clean"), opts.get("y", "robust")
    groups: dict[str, list[str]] = {}
    for rid, row in spec["rows"].items():
        groups.setdefault(row.get("group", rid), []).append(rid)
    fig, ax = plt.subplots(figsize=(5, 4))
    data = []
    for group, members in groups.items():
        pts = []
        for rid in members:
            cx, cy = _cell(res, rid, sid, xc), _cell(res, rid, sid, yc)
            if cx.mean is None or cy.mean is None:
                continue
            pts.append((cx, cy, spec["rows"][rid]))
            data.append({"series": group, "row": rid, "value": spec["rows"][rid].get("value"),
                         xc: cx.mean, f"{xc}_std": cx.std, yc: cy.mean, f"{yc}_std": cy.std})
        if not pts:
            continue
        label = spec["rows"][members[0]].get("series", spec["rows"][members[0]]["label"].split(" ")[0])
        ax.errorbar([p[0].mean for p in pts], [p[1].mean for p in pts],
                    xerr=[p[0].std or 0 for p in pts], yerr=[p[1].std or 0 for p in pts],
                    marker="o", ms=4, capsize=2, label=label)
        for cx, cy, row in pts:
            if "value" in row:
                ax.annotate(f"{row['value']}", (cx.mean, cy.mean), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
    ax.set_xlabel(opts.get("xlabel", spec["columns"][xc]["label"]))
    ax.set_ylabel(opts.get("ylabel", spec["columns"][yc]["label"]))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, data


@plotter("margin_scatter")
def margin_scatter(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Per test point, the margin after (y) against before (x) a change of model, one panel
    per margin column (HAT Figs. 3 and 7), from the first seed's evaluations. Options:
    before, after (rows), columns (margin columns), eps_l2 (dashed reference lines)."""
    from ..fileio import read_json

    spec = res.table.spec
    sid = next(iter(spec["settings"]))
    cols = opts["columns"]
    fig, axes = plt.subplots(1, len(cols), figsize=(4 * len(cols), 3.8), squeeze=False)
    data = []
    for ax, cid in zip(axes[0], cols):
        margins = {}
        for role in ("before", "after"):
            cell = _cell(res, opts[role], sid, cid)
            if not cell.cell.evals:
                raise SpecError(f"{res.table.table}: {opts[role]}/{cid} has no evaluation")
            run_id, pid = cell.cell.evals[0].split("/")
            margins[role] = read_json(layout.eval_path(plan.scale_name, run_id, pid))["margins"]
        ax.scatter(margins["before"], margins["after"], s=5, alpha=0.6)
        lo = max(min(margins["before"] + margins["after"]), 1e-3)
        hi = max(margins["before"] + margins["after"])
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        if "eps_l2" in opts:
            ax.axhline(opts["eps_l2"], color="red", ls="--", lw=1)
            ax.axvline(opts["eps_l2"], color="red", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"margin before ({spec['rows'][opts['before']]['label']})", fontsize=8)
        ax.set_ylabel(f"margin after ({spec['rows'][opts['after']]['label']})", fontsize=8)
        ax.set_title(f"along {spec['columns'][cid]['label']}", fontsize=9)
        data += [{"directions": cid, "point": i, "before": b, "after": a}
                 for i, (b, a) in enumerate(zip(margins["before"], margins["after"]))]
    fig.tight_layout()
    return fig, data


def draw(plan: Plan, res: TableResult):
    opts = dict(res.table.spec["plot"])
    kind = opts.pop("kind")
    if kind not in PLOTTERS:
        raise SpecError(f"unknown plot kind {kind!r}; known: {sorted(PLOTTERS)}")
    fig, data = PLOTTERS[kind](plan, res, opts)
    fig.suptitle(f"{res.table.paper} {res.table.table} ({res.scale} scale)", fontsize=8, x=0.01, ha="left")
    stem = res.table.stem
    out = [atomic_write(f"{stem}{ext}", lambda tmp, ext=ext: fig.savefig(tmp, format=ext[1:], dpi=150))
           for ext in (".png", ".pdf")]
    plt.close(fig)
    buf = io.StringIO()
    if data:
        w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in data for k in r)), lineterminator="\n")
        w.writeheader()
        w.writerows(data)
    out.append(write_text(f"{stem}.csv", buf.getvalue()))
    return out
