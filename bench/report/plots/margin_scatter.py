"""Plot kind ``margin_scatter`` (its options: :func:`margin_scatter`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ... import layout  # noqa: E402
from ...errors import SpecError  # noqa: E402
from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import find_cell  # noqa: E402


@PLOTS.register("margin_scatter")
def margin_scatter(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Per test point, the margin after (y) against before (x) a change of model, one panel
    per margin column (HAT Figs. 3 and 7), from the first seed's evaluations. Options:
    before, after (rows), columns (margin columns), eps_l2 (dashed reference lines)."""
    from ...fileio import read_json

    spec = res.table.spec
    sid = next(iter(spec["settings"]))
    cols = opts["columns"]
    fig, axes = plt.subplots(1, len(cols), figsize=(4 * len(cols), 3.8), squeeze=False)
    data = []
    for ax, cid in zip(axes[0], cols):
        margins = {}
        for role in ("before", "after"):
            cell = find_cell(res, opts[role], sid, cid)
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
