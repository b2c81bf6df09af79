"""The verdict index: one page per scale listing every table and figure of every paper, its
cell verdicts counted, and every claim with its verdict and the scale and budget it was
checked at, linking to the reports (``tables/index.md``, ``tables/<scale>/index.md``).

Targets that were rendered are re-read through :func:`~bench.report.aggregate.collect`, so
the index checks every result exactly as the reports do; targets not built (absent data)
are listed with what they need.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from .. import layout, provenance
from ..fileio import write_text
from ..plan import Plan
from ..plan_model import Table
from . import verdicts as V
from .aggregate import collect
from .render import fmt_claim

ORDER = [V.REPRODUCED, V.DIFFERS, V.SCALE, V.SUBSTITUTE, V.NOT_REPORTED, V.MATCHES, V.CITED, V.NOT_RUN]
SHORT = {V.REPRODUCED: "reproduced", V.DIFFERS: "differs", V.SCALE: "scale ≠ paper", V.SUBSTITUTE: "substitute",
         V.NOT_REPORTED: "not in paper", V.MATCHES: "hyperparameter matches", V.CITED: "cited",
         V.NOT_RUN: "not run"}


def index_path(scale: str) -> Path:
    return Path(f"tables/{layout.scale_prefix(scale)}index.md")


def _report(table: Table) -> str:
    return f"{table.stem}.md"


def _link(table: Table, here: Path) -> str:
    return os.path.relpath(_report(table), here.parent)


def build(plan: Plan, missing: dict[str, list[str]] | None = None) -> Path:
    """Write the index of ``plan``'s scale; ``missing`` maps a target stem to the data it
    lacks (those targets are listed as not built)."""
    missing = missing or {}
    out = index_path(plan.scale_name)
    rows, claim_rows = [], []
    totals: Counter = Counter()
    claim_totals: Counter = Counter()
    for table in sorted(plan.tables.values(), key=lambda t: (t.paper, t.kind, t.table)):
        link = f"[{table.paper} {table.table}]({_link(table, out)})"
        if table.stem in missing or not Path(_report(table)).exists():
            why = (f"needs {', '.join(missing[table.stem])}" if table.stem in missing else "not built yet")
            rows.append(f"| {table.paper} | {table.kind} {table.table} | {why} | – | – |")
            continue
        absent = {d: "absent" for d in missing.get(table.stem, [])}
        res = collect(plan, table, absent)
        counts = Counter(c.verdict for c in res.cells if c.verdict != V.ABSENT)
        totals.update(counts)
        cells = ", ".join(f"{counts[v]} {SHORT[v]}" for v in ORDER if counts[v]) or "no cells"
        claims = Counter(fmt_claim(c.regenerated) for c in res.claims)
        claim_totals.update(claims)
        summary = ", ".join(f"{n} {k}" for k, n in sorted(claims.items())) or "–"
        rows.append(f"| {table.paper} | {link} | {cells} | {summary} | {table.spec['title'].split('.')[0]} |")
        for c in res.claims:
            claim_rows.append(f"| {table.paper} {table.table} | {c.text} | {fmt_claim(c.published, 'not printed')} | "
                              f"{fmt_claim(c.regenerated)}{' (' + c.reason + ')' if getattr(c, 'reason', '') else ''} "
                              f"| {c.budget} |")
    smoke = plan.scale_name == "smoke"
    lines = [
        f"# Verdict index ({plan.scale_name} scale)",
        "",
        f"- **Scale:** `{plan.scale_name}` — {plan.scale['description']}",
        f"- **Generated:** {provenance.now()} from git commit `{provenance.git_commit()}`",
        "- **Cells:** " + (", ".join(f"{totals[v]} {SHORT[v]}" for v in ORDER if totals[v]) or "none rendered"),
        "- **Claims (regenerated):** " + (", ".join(f"{n} {k}" for k, n in sorted(claim_totals.items())) or "none"),
        f"- **Verdicts:** {V.RULE}",
    ]
    if smoke:
        lines.append("- **At the smoke scale every verdict checks the plumbing only** (synthetic data, tiny models, "
                     "a few steps): none is a finding about a paper.")
    elif plan.scale_name != layout.PAPER_SCALE:
        lines.append(f"- Below the paper scale cells read \"{V.SCALE}\"; claims carry the weight, each labelled "
                     f"with the budget it was checked at.")
    lines += ["", "## Targets", "", "| Paper | Target | Cells | Claims | Title |", "|---|---|---|---|---|", *rows]
    if claim_rows:
        lines += ["", "## Claims", "", "| Target | Claim | On the paper's numbers | Regenerated | Checked at |",
                  "|---|---|---|---|---|", *claim_rows]
    write_text(out, "\n".join(lines) + "\n")
    return out
