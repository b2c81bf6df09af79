"""Plot kind ``quadrants`` (its options: :func:`quadrants`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import KL_FLOOR, find_cell, first_seed_result, quadrant  # noqa: E402


@PLOTS.register("quadrants")
def quadrants(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """M(x) (x axis) against M(x*) (y axis) per test example, coloured by KL(p ‖ p*) (one
    logarithmic colour scale for all panels, blue low, red high, high values drawn on top),
    with the distributions of M(x) above and of M(x*) to the right: one panel per table row
    and setting (BAT Figs. 8 and B.1), from the first seed's evaluation of ``column``. Each
    panel prints the seed's R_nat (Quadrant III), R_bdy (IV) and R_rob and, from the columns
    ``errors`` names, their means over the seeds. Options: column, errors ({nat, bdy, rob}:
    columns), cmap ("coolwarm"), bins (40). The CSV holds each (setting, row)'s errors (mean,
    std, seed 0) and then every plotted point with its quadrant."""
    import numpy as np
    from matplotlib.colors import LogNorm

    spec = res.table.spec
    sids, rows = list(spec["settings"]), list(spec["rows"])
    errors, nb = opts["errors"], opts.get("bins", 40)
    panels = [(sid, rid, first_seed_result(plan, res, rid, sid, opts["column"])) for sid in sids for rid in rows]
    kls = np.concatenate([np.asarray(r["kl"], dtype=float) for _, _, r in panels])
    vmax = max(float(kls.max()), KL_FLOOR * 10)
    norm = LogNorm(vmin=max(float(np.maximum(kls, KL_FLOOR).min()), vmax * 1e-6), vmax=vmax)
    fig = plt.figure(figsize=(4.0 * len(panels) + 0.8, 4.3))
    outer = fig.add_gridspec(1, len(panels) + 1, width_ratios=[1] * len(panels) + [0.06], wspace=0.35)
    edges = np.linspace(-1, 1, nb + 1)
    summary, points, sc = [], [], None
    for k, (sid, rid, r) in enumerate(panels):
        inner = outer[0, k].subgridspec(2, 2, width_ratios=[4, 1], height_ratios=[1, 4], wspace=0.05, hspace=0.05)
        ax = fig.add_subplot(inner[1, 0])
        top = fig.add_subplot(inner[0, 0], sharex=ax)
        right = fig.add_subplot(inner[1, 1], sharey=ax)
        mc, ma = np.asarray(r["m_clean"], dtype=float), np.asarray(r["m_adv"], dtype=float)
        kl = np.maximum(np.asarray(r["kl"], dtype=float), KL_FLOOR)
        order = np.argsort(kl)
        sc = ax.scatter(mc[order], ma[order], c=kl[order], cmap=opts.get("cmap", "coolwarm"), norm=norm,
                        s=4, linewidths=0)
        top.hist(mc, bins=edges, color="grey")
        right.hist(ma, bins=edges, color="grey", orientation="horizontal")
        for a in (top, right):
            a.tick_params(labelbottom=False, labelleft=False, labelsize=6)
        ax.axhline(0, color="black", lw=0.6)
        ax.axvline(0, color="black", lw=0.6)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("M(x)", fontsize=8)
        ax.set_ylabel("M(x*)", fontsize=8)
        for text, (x, y) in (("I", (0.95, 0.95)), ("II", (0.05, 0.95)), ("III", (0.05, 0.05)), ("IV", (0.95, 0.05))):
            ax.text(x, y, text, transform=ax.transAxes, fontsize=7, color="dimgrey",
                    ha="right" if x > 0.5 else "left", va="top" if y > 0.5 else "bottom")
        cells = {key: find_cell(res, rid, sid, col) for key, col in errors.items()}
        lines = [f"seed 0: R_nat {r['nat_error']:.1f}%, R_bdy {r['bdy_error']:.1f}%, R_rob {r['rob_error']:.1f}%"]
        if all(c.mean is not None for c in cells.values()):
            lines.append(f"mean of {cells['nat'].n}: R_nat {cells['nat'].mean:.1f}%, R_bdy {cells['bdy'].mean:.1f}%, "
                         f"R_rob {cells['rob'].mean:.1f}%")
        top.set_title(f"{spec['rows'][rid]['label']} ({spec['settings'][sid]['label']})\n" + "\n".join(lines),
                      fontsize=7)
        summary.append({"setting": sid, "row": rid, "point": "errors", "seeds": cells["nat"].n,
                        **{f"{key}_error": c.mean for key, c in cells.items()},
                        **{f"{key}_error_std": c.std for key, c in cells.items()},
                        **{f"{key}_error_seed0": r[f"{key}_error"] for key in ("nat", "bdy", "rob")}})
        points += [{"setting": sid, "row": rid, "point": i, "seed": 0, "m_clean": float(a), "m_adv": float(b),
                    "kl": float(c), "quadrant": quadrant(a, b)}
                   for i, (a, b, c) in enumerate(zip(mc, ma, r["kl"]))]
    cbar = fig.colorbar(sc, cax=fig.add_subplot(outer[0, -1]))
    cbar.set_label("KL(p ‖ p*)", fontsize=8)
    cbar.ax.tick_params(labelsize=6)
    fig.subplots_adjust(left=0.05, right=0.95, bottom=0.12, top=0.8)
    return fig, summary + points
