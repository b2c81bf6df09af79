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


def _first_seed_result(plan: Plan, res: TableResult, row: str, setting: str, column: str) -> dict[str, Any]:
    """The evaluation behind a cell for its first seed (a measure's per-example data)."""
    from ..fileio import read_json

    cell = _cell(res, row, setting, column)
    if not cell.cell.evals:
        raise SpecError(f"{res.table.table}: {row}/{setting}/{column} has no evaluation")
    run_id, pid = cell.cell.evals[0].split("/")
    return read_json(layout.eval_path(plan.scale_name, run_id, pid))


KL_FLOOR = 1e-8   # KL(p ‖ p*) on a log axis: values below (exact zeros, rounding) are shown here


@plotter("histograms")
def histograms(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Distributions over the test set of per-example values of a measure (BAT Figs. 2 and 5),
    from the first seed's evaluation of ``column``: one panel per setting (row of panels) and
    ``panels`` entry (column of panels); each panel overlays one histogram per table row and
    value. Options: column, panels: [{values: [{key, label, scale (1), color}], xlabel,
    range ([lo, hi], default the data's), log (log-spaced bins and axis, values floored at
    1e-8), bins (40)}]. The CSV holds each histogram's bins and counts."""
    import numpy as np

    spec = res.table.spec
    sids, rows, panels = list(spec["settings"]), list(spec["rows"]), opts["panels"]
    shape = (1, len(sids)) if len(panels) == 1 else (len(sids), len(panels))   # one panel each: side by side
    fig, grid = plt.subplots(*shape, figsize=(4.2 * shape[1], 3.2 * shape[0]), squeeze=False)
    axes = grid.T if len(panels) == 1 else grid
    data: list[dict[str, Any]] = []
    for i, sid in enumerate(sids):
        results = {rid: _first_seed_result(plan, res, rid, sid, opts["column"]) for rid in rows}
        for j, panel in enumerate(panels):
            ax, log = axes[i][j], panel.get("log", False)
            series = []
            for k, rid in enumerate(rows):
                for value in panel["values"]:
                    v = np.asarray(results[rid][value["key"]], dtype=float) * value.get("scale", 1.0)
                    if log:
                        v = np.maximum(v, KL_FLOOR)
                    names = [spec["rows"][rid]["label"]] if len(rows) > 1 else []
                    names += [value.get("label", value["key"])] if len(panel["values"]) > 1 else []
                    series.append((rid, value, v, " ".join(names) or value.get("label", value["key"]),
                                   value.get("color", f"C{k if len(rows) > 1 else len(series)}")))
            everything = np.concatenate([s[2] for s in series])
            lo, hi = panel.get("range", [everything.min(), everything.max()])
            if lo == hi:
                lo, hi = lo - 0.5, hi + 0.5
            nb = panel.get("bins", 40)
            edges = np.geomspace(lo, hi, nb + 1) if log else np.linspace(lo, hi, nb + 1)
            for rid, value, v, label, color in series:
                counts, _ = np.histogram(np.clip(v, lo, hi), bins=edges)
                ax.stairs(counts, edges, fill=True, alpha=0.35, color=color)
                ax.stairs(counts, edges, color=color, label=f"{label} (median {np.median(v):.3g})")
                data += [{"setting": sid, "row": rid, "value": value["key"], "scale": value.get("scale", 1.0),
                          "seed": 0, "bin_lo": a, "bin_hi": b, "count": int(c)}
                         for a, b, c in zip(edges[:-1], edges[1:], counts)]
            if log:
                ax.set_xscale("log")
            ax.set_xlabel(panel.get("xlabel", ""), fontsize=8)
            ax.set_ylabel("test examples", fontsize=8)
            ax.set_title(f"({chr(97 + i * len(panels) + j)}) {spec['settings'][sid]['label']}", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig, data


def _quadrant(m_clean: float, m_adv: float) -> str:
    if m_adv > 0:
        return "I" if m_clean > 0 else "II"
    return "IV" if m_clean > 0 else "III"


@plotter("quadrants")
def quadrants(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """M(x) (x axis) against M(x*) (y axis) per test example, coloured by KL(p ‖ p*) (one
    logarithmic colour scale for all panels, blue low, red high, high values drawn on top),
    with the distributions of M(x) above and of M(x*) to the right: one panel per table row
    and setting (BAT Figs. 8 and B.1), from the first seed's evaluation of ``column``. Each
    panel prints the seed's R_nat (Quadrant III), R_bdy (IV) and R_rob and, from the columns
    ``errors`` names, their means over the seeds. Options: column, errors ({nat, bdy, rob}:
    columns), cmap ("coolwarm"), bins (40). The CSV holds each (setting, row)'s errors (mean,
    std, seed 0) and then every plotted point with its quadrant."""
    import numpy as np
    from matplotlib.colors import LogNorm

    spec = res.table.spec
    sids, rows = list(spec["settings"]), list(spec["rows"])
    errors, nb = opts["errors"], opts.get("bins", 40)
    panels = [(sid, rid, _first_seed_result(plan, res, rid, sid, opts["column"])) for sid in sids for rid in rows]
    kls = np.concatenate([np.asarray(r["kl"], dtype=float) for _, _, r in panels])
    vmax = max(float(kls.max()), KL_FLOOR * 10)
    norm = LogNorm(vmin=max(float(np.maximum(kls, KL_FLOOR).min()), vmax * 1e-6), vmax=vmax)
    fig = plt.figure(figsize=(4.0 * len(panels) + 0.8, 4.3))
    outer = fig.add_gridspec(1, len(panels) + 1, width_ratios=[1] * len(panels) + [0.06], wspace=0.35)
    edges = np.linspace(-1, 1, nb + 1)
    summary, points, sc = [], [], None
    for k, (sid, rid, r) in enumerate(panels):
        inner = outer[0, k].subgridspec(2, 2, width_ratios=[4, 1], height_ratios=[1, 4], wspace=0.05, hspace=0.05)
        ax = fig.add_subplot(inner[1, 0])
        top = fig.add_subplot(inner[0, 0], sharex=ax)
        right = fig.add_subplot(inner[1, 1], sharey=ax)
        mc, ma = np.asarray(r["m_clean"], dtype=float), np.asarray(r["m_adv"], dtype=float)
        kl = np.maximum(np.asarray(r["kl"], dtype=float), KL_FLOOR)
        order = np.argsort(kl)
        sc = ax.scatter(mc[order], ma[order], c=kl[order], cmap=opts.get("cmap", "coolwarm"), norm=norm,
                        s=4, linewidths=0)
        top.hist(mc, bins=edges, color="grey")
        right.hist(ma, bins=edges, color="grey", orientation="horizontal")
        for a in (top, right):
            a.tick_params(labelbottom=False, labelleft=False, labelsize=6)
        ax.axhline(0, color="black", lw=0.6)
        ax.axvline(0, color="black", lw=0.6)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("M(x)", fontsize=8)
        ax.set_ylabel("M(x*)", fontsize=8)
        for text, (x, y) in (("I", (0.95, 0.95)), ("II", (0.05, 0.95)), ("III", (0.05, 0.05)), ("IV", (0.95, 0.05))):
            ax.text(x, y, text, transform=ax.transAxes, fontsize=7, color="dimgrey",
                    ha="right" if x > 0.5 else "left", va="top" if y > 0.5 else "bottom")
        cells = {key: _cell(res, rid, sid, col) for key, col in errors.items()}
        lines = [f"seed 0: R_nat {r['nat_error']:.1f}%, R_bdy {r['bdy_error']:.1f}%, R_rob {r['rob_error']:.1f}%"]
        if all(c.mean is not None for c in cells.values()):
            lines.append(f"mean of {cells['nat'].n}: R_nat {cells['nat'].mean:.1f}%, R_bdy {cells['bdy'].mean:.1f}%, "
                         f"R_rob {cells['rob'].mean:.1f}%")
        top.set_title(f"{spec['rows'][rid]['label']} ({spec['settings'][sid]['label']})\n" + "\n".join(lines),
                      fontsize=7)
        summary.append({"setting": sid, "row": rid, "point": "errors", "seeds": cells["nat"].n,
                        **{f"{key}_error": c.mean for key, c in cells.items()},
                        **{f"{key}_error_std": c.std for key, c in cells.items()},
                        **{f"{key}_error_seed0": r[f"{key}_error"] for key in ("nat", "bdy", "rob")}})
        points += [{"setting": sid, "row": rid, "point": i, "seed": 0, "m_clean": float(a), "m_adv": float(b),
                    "kl": float(c), "quadrant": _quadrant(a, b)}
                   for i, (a, b, c) in enumerate(zip(mc, ma, r["kl"]))]
    cbar = fig.colorbar(sc, cax=fig.add_subplot(outer[0, -1]))
    cbar.set_label("KL(p ‖ p*)", fontsize=8)
    cbar.ax.tick_params(labelsize=6)
    fig.subplots_adjust(left=0.05, right=0.95, bottom=0.12, top=0.8)
    return fig, summary + points


@plotter("probe_curves")
def probe_curves(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Training-time probe records (bench/probes) against the epoch or the batch: one panel
    per ``panels`` entry, one line per table row (and value key), the mean over the seeds
    with a band of ± one standard deviation. Options: panels: [{column (a probe column of
    the figure), x (record key: epoch or batch), values: [{key, label}], ylabel, hline (a
    dashed reference, e.g. 90° or 0), title}]. The CSV holds every plotted point with its
    seeds' values."""
    import numpy as np

    from ..fileio import read_json

    spec = res.table.spec
    panels = opts["panels"]
    sids = list(spec["settings"])
    fig, axes = plt.subplots(len(sids), len(panels), figsize=(4.6 * len(panels), 3.4 * len(sids)), squeeze=False)
    data = []
    for a, sid in enumerate(sids):
        for b, panel in enumerate(panels):
            ax = axes[a][b]
            for i, rid in enumerate(spec["rows"]):
                cell = _cell(res, rid, sid, panel["column"]).cell
                runs = [read_json(layout.eval_path(plan.scale_name, *k.split("/")))["records"]
                        for k in cell.evals if layout.eval_path(plan.scale_name, *k.split("/")).exists()]
                for j, val in enumerate(panel["values"]):
                    per_x: dict[float, list[float]] = {}
                    for records in runs:
                        for r in records:
                            if val["key"] in r:
                                per_x.setdefault(r[panel["x"]], []).append(r[val["key"]])
                    if not per_x:
                        continue
                    xs = sorted(per_x)
                    ys = np.array([np.mean(per_x[x]) for x in xs])
                    sd = np.array([np.std(per_x[x], ddof=1) if len(per_x[x]) > 1 else 0.0 for x in xs])
                    label = spec["rows"][rid]["label"] + (f" {val['label']}" if val.get("label") else "")
                    color = f"C{i * len(panel['values']) + j}"
                    ax.plot(xs, ys, color=color, lw=1, marker="o" if len(xs) <= 60 else None, ms=2, label=label)
                    ax.fill_between(xs, ys - sd, ys + sd, color=color, alpha=0.15, lw=0)
                    data += [{"setting": sid, "row": rid, "column": panel["column"], "key": val["key"],
                              panel["x"]: x, "mean": float(y), "std": float(e), "seeds": len(per_x[x]),
                              "values": " ".join(f"{v:.6g}" for v in per_x[x])} for x, y, e in zip(xs, ys, sd)]
            if "hline" in panel:
                ax.axhline(panel["hline"], color="grey", ls="--", lw=0.8)
            ax.set_xlabel(panel["x"])
            ax.set_ylabel(panel.get("ylabel", ""))
            ax.set_title(f"{panel.get('title', '')} ({spec['settings'][sid]['label']})", fontsize=8)
            ax.legend(fontsize=6)
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
