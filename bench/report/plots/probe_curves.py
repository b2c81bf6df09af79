"""Plot kind ``probe_curves`` (its options: :func:`probe_curves`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ... import layout  # noqa: E402
from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import find_cell  # noqa: E402


@PLOTS.register("probe_curves")
def probe_curves(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Training-time probe records (bench/probes) against the epoch or the batch: one panel
    per ``panels`` entry, one line per table row (and value key), the mean over the seeds
    with a band of ± one standard deviation. Options: panels: [{column (a probe column of
    the figure), x (record key: epoch or batch), values: [{key, label}], ylabel, hline (a
    dashed reference, e.g. 90° or 0), hline_label (its legend entry), title}], ncols (lay the
    (setting, panel) axes out in lines of this many; default one line per setting). The CSV
    holds every plotted point with its seeds' values."""
    import numpy as np

    from ...fileio import read_json

    spec = res.table.spec
    panels = opts["panels"]
    sids = list(spec["settings"])
    ncols = opts.get("ncols", len(panels))
    nrows = -(-len(sids) * len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    data = []
    for a, sid in enumerate(sids):
        for b, panel in enumerate(panels):
            slot = a * len(panels) + b
            ax = axes[slot // ncols][slot % ncols]
            for i, rid in enumerate(spec["rows"]):
                cell = find_cell(res, rid, sid, panel["column"]).cell
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
                ax.axhline(panel["hline"], color="grey", ls="--", lw=0.8, label=panel.get("hline_label"))
            ax.set_xlabel(panel["x"])
            ax.set_ylabel(panel.get("ylabel", ""))
            ax.set_title(f"{panel.get('title', '')} ({spec['settings'][sid]['label']})", fontsize=8)
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig, data
