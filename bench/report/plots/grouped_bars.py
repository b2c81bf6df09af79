"""Plot kind ``grouped_bars`` (its options: :func:`grouped_bars`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import find_cell  # noqa: E402


def white_box(plan: Plan, cell) -> bool:
    """A measure cell whose helper model is the evaluated run itself (a substitute = target)."""
    for key in cell.evals:
        ev = plan.evals[key]
        if ev.run_id in ev.requires.values():
            return True
    return False


@PLOTS.register("grouped_bars")
def grouped_bars(plan: Plan, res: TableResult, opts: dict[str, Any], fig=None):
    """Bars of several columns per table row, in panels (HE Fig. 4: accuracy under transfer
    attacks, one panel per substitute model, PGD-20 and MIM-20 bars for every target), the
    value on each bar; a * marks a cell whose helper model is the evaluated run itself ("*
    indicates white-box cases"). Options: panels: [{title, columns}], setting (default: the
    first), ylabel. The error bars are ± the seeds' standard deviation."""
    import numpy as np

    spec = res.table.spec
    sid = opts.get("setting", next(iter(spec["settings"])))
    groups = opts.get("panels") or [{"columns": list(spec["columns"])}]
    rows = list(spec["rows"])
    own = fig is None
    fig = fig or plt.figure(figsize=(4.2 * len(groups), 3.6))
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    data = []
    for ax, group in zip(axes, groups):
        cols = group["columns"]
        width = 0.8 / len(cols)
        for j, cid in enumerate(cols):
            cells = [find_cell(res, rid, sid, cid) for rid in rows]
            ys = [float("nan") if c.mean is None else c.mean for c in cells]
            xs = np.arange(len(rows)) + (j - (len(cols) - 1) / 2) * width
            ax.bar(xs, ys, width, yerr=[c.std or 0.0 for c in cells], color=f"C{j}", capsize=2,
                   label=spec["columns"][cid]["label"])
            for x, y, c in zip(xs, ys, cells):
                star = white_box(plan, c.cell)
                if y == y:
                    ax.text(x, y, f"{y:.1f}{'*' if star else ''}", ha="center", va="bottom", fontsize=5, rotation=90)
                data.append({"panel": group.get("title", ""), "row": c.cell.row, "column": cid, "mean": c.mean,
                             "std": c.std, "white_box": star})
        ax.set_xticks(np.arange(len(rows)), [spec["rows"][r]["label"] for r in rows], rotation=45, ha="right",
                      fontsize=6)
        ax.set_ylabel(opts.get("ylabel", "accuracy (%)"))
        ax.set_title(group.get("title", ""), fontsize=8)
        ax.legend(fontsize=6)
    if own:
        fig.tight_layout()
    return fig, data
