"""Plot kind ``perturbation`` (its options: :func:`perturbation`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import first_seed_result  # noqa: E402


def as_image(chw):
    """A C×H×W nested list as an H×W×C (or H×W for one channel) array."""
    import numpy as np

    a = np.asarray(chw, dtype=float)
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def heat(chw):
    """|values| summed over channels, scaled to [0, 1] (a perturbation or saliency map)."""
    import numpy as np

    a = np.abs(np.asarray(chw, dtype=float)).sum(0)
    return a / a.max() if a.max() > 0 else a


@PLOTS.register("perturbation")
def perturbation(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Adversarial examples of several attacks on one test image, from the first seed's
    evaluation of a ``perturbation`` measure (DRA Fig. 3, PGD left and DRA right): the top row
    shows the clean image and each attack's x* with the predicted class, the bottom row the
    saliency |∇x L| and each attack's |δ| (summed over channels, each map scaled to its maximum),
    titled with its ‖δ‖₁ and ‖δ‖₀. Options: column (a column of the measure's protocol),
    attacks ([{key, label}] in panel order), classes (class names for the titles)."""
    spec = res.table.spec
    sid, rid = next(iter(spec["settings"])), next(iter(spec["rows"]))
    result = first_seed_result(plan, res, rid, sid, opts["column"])
    image, attacks = result["image"], opts["attacks"]
    names = opts.get("classes") or [str(i) for i in range(1000)]
    fig, axes = plt.subplots(2, 1 + len(attacks), figsize=(2.6 * (1 + len(attacks)), 5.4), squeeze=False)
    gray = len(image["x"]) == 1
    axes[0][0].imshow(as_image(image["x"]), cmap="gray" if gray else None, vmin=0, vmax=1)
    axes[0][0].set_title(f"clean: {names[image['pred']]} (label {names[image['label']]})", fontsize=8)
    axes[1][0].imshow(heat(image["saliency"]), cmap="magma")
    axes[1][0].set_title("saliency |∇x L|", fontsize=8)
    data = []
    for j, a in enumerate(attacks, start=1):
        ex, stats = image[a["key"]], result[a["key"]]
        axes[0][j].imshow(as_image(ex["x_adv"]), cmap="gray" if gray else None, vmin=0, vmax=1)
        axes[0][j].set_title(f"{a['label']}: {names[ex['pred']]}", fontsize=8)
        axes[1][j].imshow(heat(ex["delta"]), cmap="magma")
        axes[1][j].set_title(f"|δ| ({a['label']}): ‖δ‖₁ {sum(abs(v) for c in ex['delta'] for r in c for v in r):.2f}, "
                             f"‖δ‖₀ {sum(v != 0 for c in ex['delta'] for r in c for v in r)}", fontsize=7)
        data.append({"attack": a["label"], "row": rid, "setting": sid, "image_index": image["index"],
                     "image_pred": ex["pred"], "image_label": image["label"],
                     **{k: stats[k] for k in ("l0", "l1", "l2", "linf", "fooled", "robust", "saliency")}})
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig, data
