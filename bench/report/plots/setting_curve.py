"""Plot kind ``setting_curve`` (its options: :func:`setting_curve`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import find_cell  # noqa: E402


@PLOTS.register("setting_curve")
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
            cells = [find_cell(res, rid, s, cid) for s in sids]
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
