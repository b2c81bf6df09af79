"""Plot kind ``embedding_grid`` (its options: :func:`embedding_grid`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import find_cell, first_seed_result  # noqa: E402

KINDS = (("natural", "natural"), ("adversarial", "PGD-K"), ("friendly", "PGD-K-τ"))
SPACES = {"pca": "PCA", "tsne": "t-SNE"}


@PLOTS.register("embedding_grid")
def embedding_grid(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """The 2-D embeddings of a ``layer_embedding`` evaluation (FAT Figs. 3, 11, 12): one block
    per space ((a) PCA, (b) t-SNE), rows the layers, columns natural / PGD-K / PGD-K-τ data,
    points coloured by class, each panel titled with its kNN purity. Options: column (a column
    of the figure that reads the measure; its first setting, row and seed are drawn), layers,
    spaces ([pca, tsne]), class_names (legend), kind_labels ({natural, adversarial, friendly}:
    panel titles, default natural / PGD-K / PGD-K-τ with the attack's K and τ). The CSV holds
    every plotted point (space, layer, kind, class, x, y)."""
    spec = res.table.spec
    sid, rid = next(iter(spec["settings"])), next(iter(res.rows))
    cell = find_cell(res, rid, sid, opts["column"])
    layers, spaces = opts["layers"], opts.get("spaces", list(SPACES))
    fig = plt.figure(figsize=(2.6 * 3 * len(spaces), 2.5 * len(layers) + 0.4))
    data: list[dict[str, Any]] = []
    if not cell.cell.evals or cell.mean is None:
        fig.text(0.5, 0.5, "not run", ha="center", va="center")
        return fig, data
    result = first_seed_result(plan, res, rid, sid, opts["column"])
    attack = result.get("attacks", {}).get("friendly", {})
    names = opts.get("class_names") or [str(c) for c in result["classes"]]
    labels = [result["classes"].index(c) for c in result["labels"]]
    titles = {"natural": "natural", "adversarial": f"PGD-{attack.get('steps', 'K')}",
              "friendly": f"PGD-{attack.get('steps', 'K')}-{attack.get('tau', 'τ')}", **opts.get("kind_labels", {})}
    subfigs = fig.subfigures(1, len(spaces), squeeze=False)[0]
    for s, space in enumerate(spaces):
        sub = subfigs[s]
        sub.suptitle(f"({chr(97 + s)}) {SPACES[space]}", fontsize=9)
        axes = sub.subplots(len(layers), len(KINDS), squeeze=False)
        for i, k in enumerate(layers):
            pts = result["points"][f"layer{k}"][space]
            for j, (kind, _) in enumerate(KINDS):
                ax = axes[i][j]
                xs, ys = pts[kind]["x"], pts[kind]["y"]
                for c, name in enumerate(names):
                    sel = [n for n, lab in enumerate(labels) if lab == c]
                    ax.scatter([xs[n] for n in sel], [ys[n] for n in sel], s=2, alpha=0.5, color=f"C{c}",
                               label=name, rasterized=True)
                purity = result["purity"][space][f"layer{k}"][kind]
                ax.set_title(f"layer #{k}, {titles[kind]} (purity {purity:.0f}%)", fontsize=7)
                ax.set_xticks([]), ax.set_yticks([])
                data += [{"space": space, "layer": k, "kind": kind, "class": names[lab], "x": x, "y": y}
                         for lab, x, y in zip(labels, xs, ys)]
        axes[0][0].legend(fontsize=6, markerscale=3, loc="best")
    return fig, data
