"""Figures: a figure spec's ``plot.kind`` names a plotter of :mod:`bench.report.plots`;
:func:`draw` runs it and writes ``.png``, ``.pdf`` and the plotted data as ``.csv``, all
atomically."""
from __future__ import annotations

import csv
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..fileio import atomic_write, write_text  # noqa: E402
from ..plan import Plan  # noqa: E402
from .aggregate import TableResult  # noqa: E402
from .plots import PLOTS  # noqa: E402


def draw(plan: Plan, res: TableResult):
    opts = dict(res.table.spec["plot"])
    kind = opts.pop("kind")
    fig, data = PLOTS.get(kind)(plan, res, opts)
    fig.suptitle(f"{res.table.paper} {res.table.table} ({res.scale} scale)", fontsize=8, x=0.01, ha="left")
    stem = res.table.stem
    out = [atomic_write(f"{stem}{ext}", lambda tmp, ext=ext: fig.savefig(tmp, format=ext[1:], dpi=150))
           for ext in (".png", ".pdf")]
    plt.close(fig)
    buf = io.StringIO()
    if data:
        w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in data for k in r)), lineterminator="\n")
        w.writeheader()
        w.writerows(data)
    out.append(write_text(f"{stem}.csv", buf.getvalue()))
    return out
