"""Plot kind ``sweep_curve`` (its options: :func:`sweep_curve`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import find_cell  # noqa: E402


@PLOTS.register("sweep_curve")
def sweep_curve(plan: Plan, res: TableResult, opts: dict[str, Any], fig=None):
    """A column against a row sweep's values, one line per swept row (HE Fig. 2 left: PGD-20
    accuracy against the training PGD's steps, PGD-AT and PGD-AT+HE), each point labelled
    with its value. Options: column, setting (default: the first), groups (the swept rows;
    default: every sweep), xlabel, ylabel, title, annotate (true). The band is ± the seeds'
    standard deviation."""
    spec = res.table.spec
    sid = opts.get("setting", next(iter(spec["settings"])))
    rows = spec["rows"]
    groups = opts.get("groups") or list(dict.fromkeys(r["group"] for r in rows.values() if "group" in r))
    own = fig is None
    fig = fig or plt.figure(figsize=(5, 3.6))
    ax = fig.subplots()
    data = []
    for i, group in enumerate(groups):
        members = [(r["value"], rid) for rid, r in rows.items() if r.get("group") == group]
        members.sort()
        xs, ys, es = [], [], []
        for value, rid in members:
            c = find_cell(res, rid, sid, opts["column"])
            xs.append(value), ys.append(float("nan") if c.mean is None else c.mean), es.append(c.std or 0.0)
            data.append({"series": group, "row": rid, "x": value, "y": c.mean, "std": c.std, "n": c.n})
        label = rows[members[0][1]].get("series", group) if members else group
        ax.errorbar(xs, ys, yerr=es, marker="o", ms=4, capsize=2, color=f"C{i}", label=label)
        if opts.get("annotate", True):
            for x, y in zip(xs, ys):
                if y == y:
                    ax.annotate(f"{y:.2f}%", (x, y), textcoords="offset points", xytext=(0, 5), ha="center",
                                fontsize=6, color=f"C{i}")
    ax.set_xlabel(opts.get("xlabel", "x"))
    ax.set_ylabel(opts.get("ylabel", "accuracy (%)"))
    if "title" in opts:
        ax.set_title(opts["title"], fontsize=8)
    ax.legend(fontsize=7)
    if own:
        fig.tight_layout()
    return fig, data
