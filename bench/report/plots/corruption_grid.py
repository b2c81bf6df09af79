"""Plot kind ``corruption_grid`` (its options: :func:`corruption_grid`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import first_seed_result  # noqa: E402
from .perturbation import as_image  # noqa: E402


@PLOTS.register("corruption_grid")
def corruption_grid(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Corrupted versions of one test image, from the first seed's evaluation of a
    ``corruption_samples`` measure (DRA Fig. 5): one row per corruption, one column per
    severity after the clean image, each titled with the predictions of the table's rows'
    models (e.g. vanilla / DRA fine-tuned). Options: column (a column of the measure's
    protocol), classes (class names)."""
    spec = res.table.spec
    sid = next(iter(spec["settings"]))
    rows = list(spec["rows"])
    results = {rid: first_seed_result(plan, res, rid, sid, opts["column"]) for rid in rows}
    first = results[rows[0]]
    names = opts.get("classes") or [str(i) for i in range(1000)]
    cs, ss = first["corruptions"], first["severities"]
    fig, axes = plt.subplots(len(cs), 1 + len(ss), figsize=(1.6 * (1 + len(ss)), 1.75 * len(cs)), squeeze=False)
    preds = lambda get: "/".join(names[get(results[r])] for r in rows)
    data = []
    for i, c in enumerate(cs):
        axes[i][0].imshow(as_image(first["x"]), vmin=0, vmax=1)
        axes[i][0].set_title(f"clean: {preds(lambda r: r['pred_clean'])}", fontsize=6)
        axes[i][0].set_ylabel(c.replace("_", " "), fontsize=7)
        for j, s in enumerate(ss, start=1):
            axes[i][j].imshow(as_image(first["images"][c][str(s)]["x"]), vmin=0, vmax=1)
            axes[i][j].set_title(f"s{s}: {preds(lambda r: r['images'][c][str(s)]['pred'])}", fontsize=6)
            data += [{"corruption": c, "severity": s, "row": r, "label": results[r]["label"],
                      "pred": results[r]["images"][c][str(s)]["pred"]} for r in rows]
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    labels = " / ".join(spec["rows"][r]["label"] for r in rows)
    fig.text(0.5, 0.005, f"predictions: {labels}; label {names[first['label']]}; source {first['source']}",
             ha="center", fontsize=6)
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    return fig, data
