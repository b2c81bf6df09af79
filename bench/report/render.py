"""Render a table's comparison as Markdown, LaTeX (booktabs) and CSV, atomically."""
from __future__ import annotations

import csv
import io
import re
import math
from pathlib import Path

import jinja2

from .. import provenance
from ..fileio import locked, write_text
from ..plan import Plan
from ..plan_model import Table
from .aggregate import CellResult, TableResult, collect
from .. import layout
from .verdicts import DIFFERS, REPRODUCED, RULE

TEMPLATES = Path(__file__).parent / "templates"


def _num(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if math.isfinite(v) else f"not run ({v})"   # NaN/inf is never a number


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
        return ("not run" + (f" ({c.reason})" if c.reason else "")) if c.cell.evals else "–"
    text = _num(c.mean) + (f" ± {_num(c.std)}" if c.std is not None else "")
    return text + (f" (n={c.n})" if with_n else "")


def fmt_delta(c: CellResult) -> str:
    return "–" if c.delta is None else f"{c.delta:+.2f}"


def fmt_claim(v: bool | None, missing: str = "not run") -> str:
    """A claim's verdict; ``missing`` where a cell it needs has no number."""
    return {True: "holds", False: "fails", None: missing}[v]


def exactness(fp: dict) -> str:
    return {True: "exact original", False: "SUBSTITUTE", None: "unverified"}[fp.get("exact")]


TEX_TEXT = [("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$"),
            ("{", r"\{"), ("}", r"\}"), ("^", r"\^{}"), ("~", r"\~{}"),
            ("ℓ∞", r"$\ell_\infty$"), ("–", "--"), ("—", "---"), ("…", r"\ldots{}"), ("§", r"\S{}"),
            ("†", r"$^\dagger$"), ("°", r"$^\circ$"), ("’", "'"), ("“", "``"), ("”", "''")]
TEX_MATH = {"ε": r"\varepsilon", "β": r"\beta", "γ": r"\gamma", "α": r"\alpha", "δ": r"\delta", "θ": r"\theta",
            "τ": r"\tau", "κ": r"\kappa", "λ": r"\lambda", "μ": r"\mu", "σ": r"\sigma", "ρ": r"\rho", "π": r"\pi",
            "ω": r"\omega", "ξ": r"\xi", "Σ": r"\Sigma", "Δ": r"\Delta", "ℓ": r"\ell", "∞": r"\infty",
            "∇": r"\nabla", "‖": r"\|", "−": "-", "·": r"\cdot", "∈": r"\in", "→": r"\to", "≥": r"\geq",
            "≤": r"\leq", "≠": r"\neq", "≈": r"\approx", "±": r"\pm", "×": r"\times", "÷": r"\div",
            "√": r"\surd", "₂": r"_2", "²": r"^2", "⌈": r"\lceil", "⌉": r"\rceil"}


def tex(s: str) -> str:
    """Plain text as LaTeX that compiles with pdflatex: specials escaped, the Greek letters and
    symbols of the specs as math, anything else outside ASCII dropped to '?'."""
    for a, b in TEX_TEXT:
        s = s.replace(a, b)
    out = "".join(f"${TEX_MATH[ch]}$" if ch in TEX_MATH else ch for ch in s)
    out = re.sub(r"(?<!\\)\$\$", "", out)                 # adjacent math joined: $\|$$\nabla$ → $\|\nabla$
    return "".join(ch if ord(ch) < 128 else "?" for ch in out)


TEX_MARKS = {REPRODUCED: r"\,\checkmark", DIFFERS: r"\,$\times$"}


def fmt_tex(c: CellResult) -> str:
    """Regenerated ± std, the published value (± as printed) in parentheses, and the
    verdict's mark where there is one (paper scale, exact data)."""
    pub = "" if c.cell.published is None else " (" + _num(c.cell.published) + (
        rf"{{\scriptsize$\pm${_num(c.cell.std)}}}" if c.cell.std is not None else "") + ")"
    if c.text is not None:
        return tex(c.text)
    if c.cell.quoted:
        return "--" if c.cell.published is None else rf"{_num(c.cell.published)}$^\dagger$"
    regen = (f"n/a ({c.reason})" if c.reason else "--") if c.mean is None else _num(c.mean) + (
        rf"{{\scriptsize$\pm${_num(c.std)}}}" if c.std is not None else "")
    return regen + pub + TEX_MARKS.get(c.verdict, "")


def aggregation_text(t: Table) -> str:
    """How the cells were aggregated, as the caption states it."""
    used, paper = t.aggregation["seeds"], {**t.paper_spec["aggregation"], **t.spec.get("aggregation", {})}["seeds"]
    text = f"{t.aggregation['stat']} ± sample standard deviation over {len(used)} seed{'s' if len(used) > 1 else ''} ({', '.join(map(str, used))})"
    return text + (f" of the paper's {len(paper)}" if len(used) < len(paper) else "")


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
        choices=[ch for ch in t.paper_spec.get("choices", []) if t.table in ch.get("targets", [t.table])],
        throughput=res.throughput, compute=res.compute,
        device=sorted({e.get("cuda_device", "CPU") for e in res.environments}), cell=lambda r, s, c: lookup[(r, s, c)],
        hardware=res.hardware,
        fmt_pub=fmt_pub, fmt_regen=fmt_regen, fmt_delta=fmt_delta, fmt_claim=fmt_claim,
        exactness=exactness, tex=tex, fmt_tex=fmt_tex, aggregation_text=aggregation_text(t),
        tex_label=f"tab:{t.paper}-{t.table}" + ("" if res.scale == layout.PAPER_SCALE else f"-{res.scale}"),
        tex_wide=len(t.spec["settings"]) * len(t.spec["columns"]) > 6,   # a table* across both columns
        tex_width=r"\textwidth" if len(t.spec["settings"]) * len(t.spec["columns"]) > 6 else r"\columnwidth",
        tex_marks=(r"\checkmark{} reproduced ($|\Delta| \leq \max(1, 2\sqrt{s_\mathrm{pub}^2 + s^2})$ points), "
                   r"$\times$ differs; on substitute data no mark." if res.scale == layout.PAPER_SCALE else
                   "No verdict marks: below the paper scale cells are not compared with the paper."),
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
    stem = Path(table.stem)
    with locked(stem.parent, stem.name):   # one writer per target; the stale temporaries of a killed one removed
        return _render(plan, table, missing)


def _render(plan: Plan, table: Table, missing: dict[str, str] | None) -> list[Path]:
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
