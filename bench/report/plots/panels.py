"""Plot kind ``panels`` (its options: :func:`panels`)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ...plan import Plan  # noqa: E402
from ..aggregate import TableResult  # noqa: E402
from . import PLOTS  # noqa: E402


@PLOTS.register("panels")
def panels(plan: Plan, res: TableResult, opts: dict[str, Any]):
    """Several plots side by side in one figure (HE Fig. 2: the PGD-step curve left, the
    perturbation images right). Options: panels: [{kind, width (relative, 1), …its own
    options}], height (inches, 3.6). Each kind must accept a ``fig`` to draw into (sweep_curve,
    image_grid, layer_bars, grouped_bars); the CSV holds every panel's rows with a ``panel``
    column."""
    specs = opts["panels"]
    widths = [p.get("width", 1.0) for p in specs]
    fig = plt.figure(figsize=(4.6 * sum(widths), opts.get("height", 3.6)))
    subs = fig.subfigures(1, len(specs), width_ratios=widths, squeeze=False)[0]
    data = []
    for i, (p, sub) in enumerate(zip(specs, subs)):
        p = dict(p)
        kind = p.pop("kind")
        p.pop("width", None)
        _, rows = PLOTS.get(kind)(plan, res, p, fig=sub)
        data += [{"panel": i + 1, **r} for r in rows]
    return fig, data
