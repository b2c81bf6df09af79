"""Plot kind ``curve`` (its options: :func:`curve`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import find_cell  # noqa: E402


@PLOTS.register("curve")
def curve(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """A metric against the columns' ``x`` for each row (and each setting, when there are
    several: DRA Fig. 4's backbones), or ``difference: [a, b]`` (row a minus row b) with its ±
    from the seeds' standard deviations. Options: xlabel, ylabel, marker_x (a vertical dashed
    line, e.g. the training ε), xscale (multiplies x), panels ([{columns: [...], title}]: one
    panel per group of columns side by side, e.g. one per ε; default one panel of all columns)."""
    spec = res.table.spec
    sids = list(spec["settings"])
    panels = opts.get("panels") or [{"columns": list(spec["columns"]), "title": None}]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False, sharey=len(panels) > 1)
    data = []
    pairs = [tuple(opts["difference"])] if "difference" in opts else [(r, None) for r in spec["rows"]]
    series = [(s, a, b) for s in sids for a, b in pairs] if len(sids) > 1 else [(sids[0], a, b) for a, b in pairs]
    for ax, panel in zip(axes[0], panels):
        cols = sorted(panel["columns"], key=lambda c: spec["columns"][c]["x"])
        xs = [spec["columns"][c]["x"] * opts.get("xscale", 1.0) for c in cols]
        for sid, a, b in series:
            ys, es = [], []
            for c in cols:
                ca = find_cell(res, a, sid, c)
                cb = find_cell(res, b, sid, c) if b else None
                if ca.mean is None or (cb is not None and cb.mean is None):
                    ys.append(float("nan")), es.append(0.0)
                    continue
                ys.append(ca.mean - (cb.mean if cb else 0.0))
                es.append(((ca.std or 0.0) ** 2 + ((cb.std or 0.0) if cb else 0.0) ** 2) ** 0.5)
            label = (f"{spec['rows'][a]['label']} − {spec['rows'][b]['label']}" if b else spec["rows"][a]["label"])
            if len(sids) > 1:
                label = spec["settings"][sid]["label"] + ("" if len(pairs) == 1 else f" {label}")
            ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2, label=label)
            data += [{"series": label, "x": x, "y": y, "std": e} | ({"panel": panel["title"]} if len(panels) > 1 else {})
                     for x, y, e in zip(xs, ys, es)]
        if "marker_x" in opts:
            ax.axvline(opts["marker_x"], color="red", ls="--", lw=1)
        if "difference" in opts:
            ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel(opts.get("xlabel", "x"))
        if ax is axes[0][0]:
            ax.set_ylabel(opts.get("ylabel", "y"))
        if panel.get("title"):
            ax.set_title(panel["title"], fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, data
