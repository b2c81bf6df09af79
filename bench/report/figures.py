"""Figures: a figure spec's ``plot.kind`` names a plotter of :mod:`bench.report.plots`;
:func:`draw` runs it and writes ``.png``, ``.pdf`` and the plotted data as ``.csv``, all
atomically."""
from __future__ import annotations

import csv
import io
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..fileio import atomic_write, write_text  # noqa: E402
from ..plan import Plan  # noqa: E402
from .aggregate import TableResult  # noqa: E402
from .plots import PLOTS  # noqa: E402


ABBREVIATIONS = (" App", " Sec", " Eq", " Eqs", " Fig", " Figs", " Tab", " e.g", " i.e", " vs", " cf", " al")


def caption_title(caption: str, paper: str, scale: str) -> str:
    """The figure's title: its caption's first sentence ("Figure 4. Angle between …."; a full stop
    outside parentheses ends it), the paper and the scale; the full caption is in the report."""
    head, _, rest = caption.partition(". ") if caption.startswith(("Figure", "Fig.")) else ("", "", caption)
    depth, end = 0, len(rest)
    for i, ch in enumerate(rest):
        depth += (ch in "([") - (ch in ")]")
        if (ch == "." and depth <= 0 and (i + 1 == len(rest) or rest[i + 1].isspace())
                and not rest[:i].endswith(ABBREVIATIONS)):
            end = i
            break
    first = (f"{head}. " if head else "") + rest[:end].rstrip(" .") + "."
    return f"{paper.upper()} {first} ({scale} scale)"


def add_title(fig, text: str, fontsize: float = 8) -> None:
    """The title above everything the plotter drew (saved with a tight bounding box, so the canvas
    grows to hold it and it never overlaps a panel, a legend or the plotter's own titles), wrapped
    to the figure's width."""
    chars = max(40, int(fig.get_size_inches()[0] * 72 / (0.52 * fontsize)))
    fig.text(0.01, 1.0, textwrap.fill(text, chars), fontsize=fontsize, ha="left", va="bottom",
             transform=fig.transFigure)


def draw(plan: Plan, res: TableResult):
    opts = dict(res.table.spec["plot"])
    kind = opts.pop("kind")
    fig, data = PLOTS.get(kind)(plan, res, opts)
    add_title(fig, caption_title(res.table.spec.get("title", res.table.table), res.table.paper, res.scale))
    stem = res.table.stem
    out = [atomic_write(f"{stem}{ext}", lambda tmp, ext=ext: fig.savefig(tmp, format=ext[1:], dpi=150,
                                                                          bbox_inches="tight", pad_inches=0.08))
           for ext in (".png", ".pdf")]
    plt.close(fig)
    buf = io.StringIO()
    if data:
        w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in data for k in r)), lineterminator="\n")
        w.writeheader()
        w.writerows(data)
    out.append(write_text(f"{stem}.csv", buf.getvalue()))
    return out
