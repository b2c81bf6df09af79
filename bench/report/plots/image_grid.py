"""Plot kind ``image_grid`` (its options: :func:`image_grid`)."""
from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import find_cell, first_seed_result  # noqa: E402


def _image(b64: str):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


@PLOTS.register("image_grid")
def image_grid(plan: Plan, res: TableResult, opts: dict[str, Any], fig=None):
    """Images a measure stored (``perturbations``: clean image, adversarial image, rescaled
    perturbation (δ + ε)/(2ε)), one grid row per table row and one column per image (HE
    Fig. 2 right: the perturbations of Standard, FreeAT and FreeAT+HE on ImageNet), with the
    clean images on top. Options: column (a perturbations column), setting (default: the
    first), rows (default: every row measured there), show ("delta" | "x_adv"), title.
    The CSV lists each image's label and predictions."""
    spec = res.table.spec
    sid = opts.get("setting", next(iter(spec["settings"])))
    rows = opts.get("rows") or [r for r in spec["rows"] if find_cell(res, r, sid, opts["column"]).cell.evals]
    results = {r: first_seed_result(plan, res, r, sid, opts["column"]) for r in rows
               if find_cell(res, r, sid, opts["column"]).mean is not None}
    if not results:
        fig = fig or plt.figure(figsize=(5, 3))
        fig.text(0.5, 0.5, "not run", ha="center")
        return fig, []
    n = max(len(r["images"]) for r in results.values())
    fig = fig or plt.figure(figsize=(1.6 * n, 1.6 * (len(results) + 1)))
    axes = fig.subplots(len(results) + 1, n, squeeze=False, gridspec_kw={"wspace": 0.04, "hspace": 0.06})
    show = opts.get("show", "delta")
    data = []
    first = next(iter(results.values()))["images"]
    for j in range(n):
        axes[0][j].imshow(_image(first[j]["x"]))
    axes[0][0].set_ylabel("clean", fontsize=7)
    for i, (rid, r) in enumerate(results.items(), start=1):
        for j, img in enumerate(r["images"]):
            axes[i][j].imshow(_image(img[show]))
            data.append({"row": rid, "image": j, "label": img["label"], "pred": img["pred"],
                         "pred_adv": img["pred_adv"], "eps": r["eps"]})
        axes[i][0].set_ylabel(spec["rows"][rid]["label"], fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    if "title" in opts:
        fig.suptitle(opts["title"], fontsize=8)
    return fig, data
