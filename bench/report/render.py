"""Render a table's comparison as Markdown, LaTeX (booktabs) and CSV, atomically."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import jinja2

from .. import provenance
from ..fileio import write_text
from ..plan import Plan, Table
from .aggregate import CellResult, TableResult, collect
from .verdicts import RULE

TEMPLATES = Path(__file__).parent / "templates"


def _num(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def fmt_pub(c: CellResult) -> str:
    if c.cell.published is None:
        return "–"
    return _num(c.cell.published) + (f" ± {_num(c.cell.std)}" if c.cell.std is not None else "")


def fmt_regen(c: CellResult, with_n: bool = False) -> str:
    if c.text is not None:
        return c.text
    if c.cell.param is not None:
        return _num(c.mean)
    if c.cell.quoted:
        return "–" if c.cell.published is None else f"{_num(c.cell.published)}†"
    if c.mean is None:
        return "not run" if c.cell.evals else "–"
    text = _num(c.mean) + (f" ± {_num(c.std)}" if c.std is not None else "")
    return text + (f" (n={c.n})" if with_n else "")


def fmt_delta(c: CellResult) -> str:
    return "–" if c.delta is None else f"{c.delta:+.2f}"


def fmt_claim(v: bool | None, missing: str = "not run") -> str:
    """A claim's verdict; ``missing`` where a cell it needs has no number."""
    return {True: "holds", False: "fails", None: missing}[v]


def exactness(fp: dict) -> str:
    return {True: "exact original", False: "SUBSTITUTE", None: "unverified"}[fp.get("exact")]


def tex(s: str) -> str:
    for a, b in [("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("ℓ∞", r"$\ell_\infty$"), ("ε", r"$\varepsilon$"), ("–", "--"), ("≠", r"$\neq$")]:
        s = s.replace(a, b)
    return s


def fmt_tex(c: CellResult) -> str:
    if c.text is not None:
        return tex(c.text)
    if c.cell.quoted:
        return "--" if c.cell.published is None else rf"{_num(c.cell.published)}$^\dagger$"
    regen = "--" if c.mean is None else _num(c.mean) + (
        rf"{{\scriptsize$\pm${_num(c.std)}}}" if c.std is not None else "")
    return regen + (f" ({_num(c.cell.published)})" if c.cell.published is not None else "")


def _context(res: TableResult, plan: Plan) -> dict:
    t = res.table
    lookup = {(c.cell.row, c.cell.setting, c.cell.column): c for c in res.cells}
    return dict(
        paper_title=t.paper_spec["title"], table_id=f"{t.paper}_{t.table}", title=t.spec["title"],
        scale=res.scale, scale_description=plan.scale["description"], generated=provenance.now(),
        commit=provenance.git_commit(), datasets=dict(sorted(res.datasets.items())), missing=res.missing,
        implementations=res.implementations, budgets=res.budgets, imported=res.imported,
        budget_text=(f"every setting: {next(iter(res.budgets.values()))}"
                     if len(res.budgets) > 1 and len(set(res.budgets.values())) == 1 else
                     "; ".join(f"{t.spec['settings'][sid]['label']}: {text}" for sid, text in res.budgets.items())),
        stat=t.aggregation["stat"], seeds=t.aggregation["seeds"], rule=RULE,
        settings=t.spec["settings"], columns=t.spec["columns"], rows=res.rows,
        row_header=t.spec.get("row_header", "Algorithm"), cells=res.cells, claims=res.claims,
        choices=t.paper_spec.get("choices", []), throughput=res.throughput,
        device=sorted({e.get("cuda_device", "CPU") for e in res.environments}), cell=lambda r, s, c: lookup[(r, s, c)],
        hardware=res.hardware,
        fmt_pub=fmt_pub, fmt_regen=fmt_regen, fmt_delta=fmt_delta, fmt_claim=fmt_claim,
        exactness=exactness, tex=tex, fmt_tex=fmt_tex,
        quoted={res.rows[c.cell.row]["label"]: c.cell.quoted for c in res.cells if c.cell.quoted and c.cell.row in res.rows})


def to_csv(res: TableResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["paper", "table", "scale", "setting", "row", "column", "published", "published_std",
                "mean", "std", "n", "delta", "verdict", "values", "dataset_sha256"])
    for c in res.cells:
        fp = res.datasets.get(c.cell.dataset, {}) if c.n else {}
        w.writerow([res.table.paper, res.table.table, res.scale, c.cell.setting, c.cell.row, c.cell.column,
                    c.cell.published, c.cell.std, c.mean, c.std, c.n, c.delta, c.verdict,
                    c.text if c.text is not None else " ".join(f"{v:.4f}" for v in c.values), fp.get("sha256", "")])
    return buf.getvalue()


def render(plan: Plan, table: Table, missing: dict[str, str] | None = None) -> list[Path]:
    """Write the target's files: a table's .md/.tex/.csv, or a figure's .png/.pdf, the
    .csv of the data it plots, and an .md comparison with the published numbers."""
    res = collect(plan, table, missing)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    ctx = _context(res, plan)
    outputs = {".md": env.get_template("table.md.j2").render(ctx)}
    if table.kind == "table":
        outputs[".tex"] = env.get_template("table.tex.j2").render(ctx)
        outputs[".csv"] = to_csv(res)
        return [write_text(f"{table.stem}{ext}", text) for ext, text in outputs.items()]
    from .figures import draw

    written = draw(plan, res)
    outputs[".cells.csv"] = to_csv(res)   # the cells in the tables' CSV form, for `bench pin` / `bench regress`
    return written + [write_text(f"{table.stem}{ext}", text) for ext, text in outputs.items()]
