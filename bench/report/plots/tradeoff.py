"""Plot kind ``tradeoff`` (its options: :func:`tradeoff`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import find_cell  # noqa: E402


@PLOTS.register("tradeoff")
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
            cx, cy = find_cell(res, rid, sid, xc), find_cell(res, rid, sid, yc)
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
