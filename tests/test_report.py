"""Reports: verdict rules, pinned-reference regression."""
from __future__ import annotations

import csv

import pytest

from bench.errors import BenchError
from bench.report import regress, verdicts


def test_cell_verdicts():
    v = dict(planned=True, std=0.3, std_pub=None, paper_scale=True, exact_data=True)
    assert verdicts.cell_verdict(mean=84.0, published=84.9, **v) == verdicts.REPRODUCED
    assert verdicts.cell_verdict(mean=82.0, published=84.9, **v) == verdicts.DIFFERS
    assert verdicts.cell_verdict(mean=82.0, published=84.9, **{**v, "paper_scale": False}) == verdicts.SCALE
    assert verdicts.cell_verdict(mean=82.0, published=84.9, **{**v, "exact_data": False}) == verdicts.SUBSTITUTE
    assert verdicts.cell_verdict(mean=None, published=84.9, **v) == verdicts.NOT_RUN
    assert verdicts.cell_verdict(mean=1.0, published=None, **v) == verdicts.NOT_REPORTED
    assert verdicts.cell_verdict(mean=None, published=None, **{**v, "planned": False}) == verdicts.ABSENT
    assert verdicts.tolerance(1.0, 1.0) == pytest.approx(2 * 2 ** 0.5)


def write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["setting", "row", "column", "mean", "std", "dataset_sha256"])
        w.writeheader()
        w.writerows(rows)


def test_regress_fails_loudly_on_drift_and_never_crosses_datasets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(regress, "REFERENCE", tmp_path / "ref")
    stem = "tables/mini/x_table1"
    (tmp_path / "tables/mini").mkdir(parents=True)
    base = [dict(setting="s", row="a", column="clean", mean="50.0", std="0.5", dataset_sha256="h"),
            dict(setting="s", row="b", column="clean", mean="40.0", std="", dataset_sha256="h")]
    write(tmp_path / f"{stem}.csv", base)
    pinned = regress.pin(stem, {"cifar10": {"source": "imagefolder:cifar10-jpeg", "sha256": "h"}})
    assert pinned.parent.name.startswith("data-") and pinned.with_suffix(".json").exists()
    write(tmp_path / f"{stem}.csv", [dict(base[0], mean="51.5"), base[1]])
    assert regress.regress(stem) == []
    write(tmp_path / f"{stem}.csv", [dict(base[0], mean="53.0"), dict(base[1], mean="", dataset_sha256="")])
    problems = regress.regress(stem)
    assert len(problems) == 2 and "Δ +3.00" in problems[0] and "not run" in problems[1]
    # the same target on other data (the real CIFAR-10, say) is never compared with this pin
    write(tmp_path / f"{stem}.csv", [dict(base[0], dataset_sha256="real"), dict(base[1], dataset_sha256="real")])
    with pytest.raises(BenchError, match="no pinned reference .* on this data .*pins exist for: data-.*cifar10-jpeg"):
        regress.regress(stem)
    with pytest.raises(BenchError, match="does not exist"):
        regress.regress("tables/mini/y_table1")


def test_claims_on_undefined_numbers_are_not_run_with_the_reason():
    from bench.report.claims import check

    v = {("a", "s", "x"): 2.0, ("b", "s", "x"): 0.0, ("n", "s", "x"): float("nan"), ("i", "s", "x"): float("inf")}
    assert check("a.s.x / b.s.x > 1", v) == (None, "not run (float division by zero in a.s.x / b.s.x)")
    assert check("n.s.x < 1 or a.s.x > 1", v) == (None, "not run (nan in n.s.x)")
    assert check("i.s.x - a.s.x > 0", v) == (None, "not run (inf in i.s.x)")
    assert check("a.s.x * 1e308 * 10 > 0", v)[0] is None            # overflow to inf
    assert check("a.s.x > z.s.x", v) == (None, "not run")
    assert check("a.s.x / 2 >= 1", v) == (True, "")


def test_nan_results_never_render_as_numbers(tmp_path, monkeypatch):
    """A NaN result reads "not run (nan)" in every format, and the claims over it (or over a
    division by zero) read "not run (<reason>)" instead of crashing the render."""
    import math

    from bench import layout
    from bench.fileio import write_json
    from bench.plan import Plan
    from bench.report.render import render

    monkeypatch.chdir(tmp_path)
    plan = Plan("smoke", papers=["hat"])
    table = plan.table("tables/smoke/hat_table2.md")
    table.spec["claims"].append({"id": "zero", "text": "a ratio", "check": "hat.svhn.clean / standard.svhn.robust > 1"})
    hat_cifar = {k for c in table.cells if (c.row, c.setting) == ("hat", "cifar10") for k in c.evals}
    from bench.data.store import current_fingerprint

    fps = {}
    for key in table.eval_keys():   # results as the jobs would write them, bound to their runs and data
        ev = plan.evals[key]
        cfg = plan.run(ev.run_id).config
        fp = fps.setdefault(cfg["dataset"], current_fingerprint(cfg))
        write_json(layout.eval_path("smoke", ev.run_id, ev.protocol_id),
                   {"run_id": ev.run_id, "protocol_id": ev.protocol_id, "train_dataset": fp, "dataset": fp, "n": 16,
                    "clean": 80.0, "implementation": "fake", "checkpoint": {"which": "best", "sha256": "c"},
                    "robust": math.nan if key == min(hat_cifar) else 0.0, "environment": {}})
        write_json(layout.run_dir("smoke", ev.run_id) / "run.json",
                   {"throughput": None, "dataset": fp, "checkpoints": {"best": "c", "last": "c"}})
    stale = tmp_path / "tables/smoke/.hat_table2.md.k1ll3d.tmp"   # a killed render's temporary
    other = tmp_path / "tables/smoke/.hat_table3.md.l1ve.tmp"     # another target's, maybe live
    stale.parent.mkdir(parents=True)
    stale.write_text("x"), other.write_text("x")
    render(plan, table)
    assert not stale.exists() and other.exists()
    md = (tmp_path / "tables/smoke/hat_table2.md").read_text()
    assert "not run (nan)" in md and "| nan" not in md and "NaN" not in md
    claims = md.split("## Claims")[1]
    assert "not run (nan in hat.cifar10.robust)" in claims
    assert "not run (float division by zero in hat.svhn.clean / standard.svhn.robust)" in claims
    rows = list(csv.DictReader(open(tmp_path / "tables/smoke/hat_table2.csv")))
    cell = next(r for r in rows if (r["row"], r["setting"], r["column"]) == ("hat", "cifar10", "robust"))
    assert cell["mean"] == "" and cell["verdict"] == "not run" and "nan" not in cell["values"]
    assert "n/a (nan)" in (tmp_path / "tables/smoke/hat_table2.tex").read_text()


def test_figure_titles_come_from_the_caption_and_never_overlap():
    import matplotlib.pyplot as plt

    from bench.report.figures import add_title, caption_title

    cap = ("Figure 9. Small CNN trained with App. B's search (Eq. 6, K = 10): Madry and FAT. "
           "The second sentence is in the report only.")
    assert caption_title(cap, "fat", "mini") == ("FAT Figure 9. Small CNN trained with App. B's search "
                                                 "(Eq. 6, K = 10): Madry and FAT. (mini scale)")
    fig, axes = plt.subplots(1, 3, figsize=(6, 2))
    for ax in axes:
        ax.set_title("a panel title")
        ax.plot([0, 1], [0, 1], label="x")
    fig.suptitle("the plotter's own title")
    fig.tight_layout()
    add_title(fig, caption_title("Figure 1. " + "a long first sentence, " * 12 + "its end.", "fat", "mini"))
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    title = fig.texts[-1]
    assert "\n" in title.get_text()                       # wrapped to the figure's width
    tb = title.get_window_extent(r)
    assert tb.width <= fig.bbox.width
    others = [ax.get_tightbbox(r) for ax in axes] + [fig._suptitle.get_window_extent(r)]
    assert not any(tb.overlaps(o) for o in others)
    plt.close(fig)
