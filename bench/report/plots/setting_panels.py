"""Plot kind ``setting_panels`` (its options: :func:`setting_panels`)."""
from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import cell_row, find_cell  # noqa: E402


@PLOTS.register("setting_panels")
def setting_panels(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Each column in its own panel against the settings' ``x`` (FAT Figs. 6, 7, 9, 10, 13–20:
    accuracy under each attack against ε_train or the step size α), one line per row with
    error bars of ± one standard deviation where there are several seeds. Options: xlabel,
    ylabel, ncols (panels per line, 3), colors ({row: colour}), styles ({row: line style}).
    The CSV has one line per plotted point: setting, row, column, x, the centre (mean), std,
    n, the seeds' values and the dataset's sha256 (the per-cell columns ``bench regress``
    compares)."""
    spec = res.table.spec
    sids = sorted(spec["settings"], key=lambda s: spec["settings"][s]["x"])
    xs = [spec["settings"][s]["x"] for s in sids]
    cols = list(spec["columns"])
    ncols = min(opts.get("ncols", 3), len(cols))
    nrows = math.ceil(len(cols) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.8 * nrows), squeeze=False)
    colors, styles = opts.get("colors", {}), opts.get("styles", {})
    data = []
    for k, cid in enumerate(cols):
        ax = axes[k // ncols][k % ncols]
        for i, rid in enumerate(res.rows):
            cells = [find_cell(res, rid, s, cid) for s in sids]
            ys = [float("nan") if c.mean is None else c.mean for c in cells]
            es = [c.std or 0.0 for c in cells]
            ax.errorbar(xs, ys, yerr=es if any(es) else None, color=colors.get(rid, f"C{i}"),
                        ls=styles.get(rid, "-"), marker="o", ms=3, lw=1.2, capsize=2, label=res.rows[rid]["label"])
            data += [{**cell_row(res, c), "x": x} for x, c in zip(xs, cells)]
        ax.set_title(spec["columns"][cid]["label"], fontsize=9)
        ax.set_xlabel(opts.get("xlabel", "x"))
        ax.set_ylabel(opts.get("ylabel", "test accuracy (%)"))
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7)
    for k in range(len(cols), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    fig.tight_layout()
    return fig, data
