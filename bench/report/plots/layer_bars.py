"""Plot kind ``layer_bars`` (its options: :func:`layer_bars`)."""
from __future__ import annotations

import re
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ... import layout  # noqa: E402
from ...fileio import read_json  # noqa: E402
from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import find_cell  # noqa: E402


def layer_label(name: str, model: dict[str, Any]) -> str:
    """'B<stage>-L<block>-conv<k>' for a Wide ResNet's block convolutions (HE Fig. 3's
    labels: "'B' refers to block, 'L' refers to layer"), else the parameter's name."""
    m = re.fullmatch(r"layers\.(\d+)\.(conv\d|shortcut)\.weight", name)
    if m and model.get("name") == "wide_resnet":
        n = (int(model.get("depth", 34)) - 4) // 6
        j = int(m.group(1))
        return f"B{j // n + 1}-L{j % n + 1}-{m.group(2)}"
    return name.removesuffix(".weight")


@PLOTS.register("layer_bars")
def layer_bars(plan: Plan, res: TableResult, opts: dict[str, Any], fig=None):
    """Per-parameter values a probe recorded (``layer_grad_ratio``: E(‖∇ω L(x*)‖ / ‖∇ω L(x)‖))
    as grouped bars, one bar per table row at each convolution weight (HE Fig. 3), mean over
    the seeds. Options: column (a probe column), setting (default: the first), key
    ("ratio"), ylabel, hline (1.0: equal attention), title."""
    import numpy as np

    spec = res.table.spec
    sid = opts.get("setting", next(iter(spec["settings"])))
    key = opts.get("key", "ratio")
    own = fig is None
    series = {}
    for rid in spec["rows"]:
        cell = find_cell(res, rid, sid, opts["column"]).cell
        per: dict[str, list[float]] = {}
        model = plan.run(cell.runs[0]).config["model"] if cell.runs else {}
        for k in cell.evals:
            path = layout.eval_path(plan.scale_name, *k.split("/"))
            if path.exists():
                for r in read_json(path)["records"]:
                    if r["param"].endswith("weight") and len(r["shape"]) == 4:
                        per.setdefault(layer_label(r["param"], model), []).append(r[key])
        series[rid] = per
    labels = list(dict.fromkeys(lab for per in series.values() for lab in per))
    fig = fig or plt.figure(figsize=(max(6, 0.28 * len(labels) + 2), 3.8))
    ax = fig.subplots()
    width = 0.8 / max(1, len(series))
    data = []
    for i, (rid, per) in enumerate(series.items()):
        ys = [float(np.mean(per[lab])) if lab in per else float("nan") for lab in labels]
        ax.bar(np.arange(len(labels)) + (i - (len(series) - 1) / 2) * width, ys, width,
               label=spec["rows"][rid]["label"], color=f"C{i}")
        data += [{"row": rid, "param": lab, key: y, "seeds": len(per.get(lab, []))} for lab, y in zip(labels, ys)]
    if opts.get("hline", 1.0) is not None:
        ax.axhline(opts.get("hline", 1.0), color="grey", ls="--", lw=0.8)
    ax.set_xticks(np.arange(len(labels)), labels, rotation=90, fontsize=5)
    ax.set_ylabel(opts.get("ylabel", key))
    if "title" in opts:
        ax.set_title(opts["title"], fontsize=8)
    ax.legend(fontsize=7)
    if own:
        fig.tight_layout()
    return fig, data
