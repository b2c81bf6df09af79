"""Plot kind ``decision_regions`` (its options: :func:`decision_regions`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ... import layout  # noqa: E402
from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402
from .base import fmt  # noqa: E402


@PLOTS.register("decision_regions")
def decision_regions(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Predicted class on 2-D slices of a low-dimensional input space, one row of panels
    per table row (first seed's selected checkpoint), test points near each slice on top.
    Options: planes: [{axes: [i, j], fixed: {k: value}, limits: [[lo, hi], [lo, hi]]}],
    resolution (200), near (distance to the slice for showing test points, 0.05)."""
    import torch

    from ... import checkpoint
    from ...data.store import load_for_run

    spec = res.table.spec
    planes, n, near = opts["planes"], opts.get("resolution", 200), opts.get("near", 0.05)
    rows = list(spec["rows"])
    fig, axes = plt.subplots(len(rows), len(planes), figsize=(4.2 * len(planes), 3.8 * len(rows)), squeeze=False)
    data: list[dict[str, Any]] = []
    for i, rid in enumerate(rows):
        clean_cell = next(c for c in res.cells if c.cell.row == rid and c.cell.metric == "clean")
        robust_cell = next(c for c in res.cells if c.cell.row == rid and c.cell.metric == "robust")
        run_id = clean_cell.cell.runs[0]
        model, _, _ = checkpoint.load_run(layout.run_dir(plan.scale_name, run_id), "best", torch.device("cpu"))
        test = load_for_run(plan.run(run_id).config).test
        for j, plane in enumerate(planes):
            a, b = plane["axes"]
            (xlo, xhi), (ylo, yhi) = plane["limits"]
            gx, gy = torch.meshgrid(torch.linspace(xlo, xhi, n), torch.linspace(ylo, yhi, n), indexing="xy")
            pts = torch.zeros(n * n, test.x.shape[1])
            for k, v in plane["fixed"].items():
                pts[:, int(k)] = v
            pts[:, a], pts[:, b] = gx.reshape(-1), gy.reshape(-1)
            with torch.no_grad():
                pred = model(pts).argmax(1)
            ax = axes[i][j]
            ax.contourf(gx, gy, pred.view(n, n).float(), levels=[-0.5, 0.5, 1.5], colors=["#cfe2f3", "#f4cccc"])
            mask = torch.ones(len(test.y), dtype=torch.bool)
            for k, v in plane["fixed"].items():
                mask &= (test.x[:, int(k)] - v).abs() < near
            for label, color in ((0, "#1f4e79"), (1, "#990000")):
                sel = mask & (test.y == label)
                ax.scatter(test.x[sel, a], test.x[sel, b], s=6, c=color, label=f"class {label + 1}")
            fixed = ", ".join(f"x{int(k) + 1}={v}" for k, v in plane["fixed"].items())
            ax.set_xlabel(f"x{a + 1}")
            ax.set_ylabel(f"x{b + 1}")
            ax.set_title(f"{spec['rows'][rid]['label']} ({fixed})\nclean {fmt(clean_cell.mean)}, "
                         f"robust {fmt(robust_cell.mean)}", fontsize=9)
            data += [{"row": rid, "plane": j, f"x{a + 1}": float(x), f"x{b + 1}": float(y), "prediction": int(p)}
                     for x, y, p in zip(pts[:, a], pts[:, b], pred)]
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig, data
