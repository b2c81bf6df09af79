"""Plot kind ``sweep_panels`` (its options: :func:`sweep_panels`)."""
from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...errors import SpecError  # noqa: E402
from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import cell_row, find_cell  # noqa: E402


@PLOTS.register("sweep_panels")
def sweep_panels(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Each column in its own panel against the swept value of a row ``sweep`` (FAT Fig. 4:
    accuracy against τ), one line per setting (FAT Fig. 4: the networks): the table's
    centre (median or mean over the seeds) with a shaded band of ± one standard deviation.
    Options: group (the swept row; default: the table's only sweep), xlabel, ylabel, ncols
    (panels per line, 3), colors ({setting: colour}). The CSV has one line per plotted point:
    setting, row, column, x, the centre (mean), std, n, the seeds' values and the dataset's
    sha256 (the per-cell columns ``bench regress`` compares)."""
    spec = res.table.spec
    rows = res.table.spec["rows"]
    groups = list(dict.fromkeys(r["group"] for r in rows.values() if "group" in r))
    group = opts.get("group", groups[0] if len(groups) == 1 else None)
    if group not in groups:
        raise SpecError(f"{res.table.table}: sweep_panels needs plot.group, one of {groups}")
    members = sorted((r["value"], rid) for rid, r in rows.items() if r.get("group") == group)
    cols = list(spec["columns"])
    ncols = min(opts.get("ncols", 3), len(cols))
    nrows = math.ceil(len(cols) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.8 * nrows), squeeze=False)
    colors = opts.get("colors", {})
    data = []
    for k, cid in enumerate(cols):
        ax = axes[k // ncols][k % ncols]
        for i, sid in enumerate(spec["settings"]):
            cells = [find_cell(res, rid, sid, cid) for _, rid in members]
            xs = [v for v, _ in members]
            ys = [float("nan") if c.mean is None else c.mean for c in cells]
            sd = [c.std or 0.0 for c in cells]
            color = colors.get(sid, f"C{i}")
            ax.plot(xs, ys, color=color, marker="o", ms=3, lw=1.2, label=spec["settings"][sid]["label"])
            ax.fill_between(xs, [y - e for y, e in zip(ys, sd)], [y + e for y, e in zip(ys, sd)],
                            color=color, alpha=0.2, lw=0)
            data += [{**cell_row(res, c), "x": x} for x, c in zip(xs, cells)]
        ax.set_title(spec["columns"][cid]["label"], fontsize=9)
        ax.set_xlabel(opts.get("xlabel", "value"))
        ax.set_ylabel(opts.get("ylabel", "test accuracy (%)"))
        ax.set_xticks([v for v, _ in members])
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7)
    for k in range(len(cols), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    fig.tight_layout()
    return fig, data
