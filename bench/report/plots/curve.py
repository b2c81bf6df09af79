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
            ca = find_cell(res, a, sid, c)
            cb = find_cell(res, b, sid, c) if b else None
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
