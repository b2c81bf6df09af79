"""Plot kind ``histograms`` (its options: :func:`histograms`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import KL_FLOOR, first_seed_result  # noqa: E402


@PLOTS.register("histograms")
def histograms(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Distributions over the test set of per-example values of a measure (BAT Figs. 2 and 5),
    from the first seed's evaluation of ``column``: one panel per setting (row of panels) and
    ``panels`` entry (column of panels); each panel overlays one histogram per table row and
    value. Options: column, panels: [{values: [{key, label, scale (1), color}], xlabel,
    range ([lo, hi], default the data's), log (log-spaced bins and axis, values floored at
    1e-8), bins (40)}]. The CSV holds each histogram's bins and counts."""
    import numpy as np

    spec = res.table.spec
    sids, rows, panels = list(spec["settings"]), list(spec["rows"]), opts["panels"]
    shape = (1, len(sids)) if len(panels) == 1 else (len(sids), len(panels))   # one panel each: side by side
    fig, grid = plt.subplots(*shape, figsize=(4.2 * shape[1], 3.2 * shape[0]), squeeze=False)
    axes = grid.T if len(panels) == 1 else grid
    data: list[dict[str, Any]] = []
    for i, sid in enumerate(sids):
        results = {rid: first_seed_result(plan, res, rid, sid, opts["column"]) for rid in rows}
        for j, panel in enumerate(panels):
            ax, log = axes[i][j], panel.get("log", False)
            series = []
            for k, rid in enumerate(rows):
                for value in panel["values"]:
                    v = np.asarray(results[rid][value["key"]], dtype=float) * value.get("scale", 1.0)
                    if log:
                        v = np.maximum(v, KL_FLOOR)
                    names = [spec["rows"][rid]["label"]] if len(rows) > 1 else []
                    names += [value.get("label", value["key"])] if len(panel["values"]) > 1 else []
                    series.append((rid, value, v, " ".join(names) or value.get("label", value["key"]),
                                   value.get("color", f"C{k if len(rows) > 1 else len(series)}")))
            everything = np.concatenate([s[2] for s in series])
            lo, hi = panel.get("range", [everything.min(), everything.max()])
            if lo == hi:
                lo, hi = lo - 0.5, hi + 0.5
            nb = panel.get("bins", 40)
            edges = np.geomspace(lo, hi, nb + 1) if log else np.linspace(lo, hi, nb + 1)
            for rid, value, v, label, color in series:
                counts, _ = np.histogram(np.clip(v, lo, hi), bins=edges)
                ax.stairs(counts, edges, fill=True, alpha=0.35, color=color)
                ax.stairs(counts, edges, color=color, label=f"{label} (median {np.median(v):.3g})")
                data += [{"setting": sid, "row": rid, "value": value["key"], "scale": value.get("scale", 1.0),
                          "seed": 0, "bin_lo": a, "bin_hi": b, "count": int(c)}
                         for a, b, c in zip(edges[:-1], edges[1:], counts)]
            if log:
                ax.set_xscale("log")
            ax.set_xlabel(panel.get("xlabel", ""), fontsize=8)
            ax.set_ylabel("test examples", fontsize=8)
            ax.set_title(f"({chr(97 + i * len(panels) + j)}) {spec['settings'][sid]['label']}", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig, data
