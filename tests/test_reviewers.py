"""What reviewers read around the tables: the verdict index, a cell explained, paste-ready
LaTeX, targets found from their paths."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from bench.cli import scale_of_target
from bench.report.render import tex

from test_core_loop import toy_spec  # noqa: F401  (fixture)


@pytest.fixture()
def toy_rendered(toy_spec, tmp_path, monkeypatch):  # noqa: F811
    from bench import layout
    from bench.evaluate import run_protocol
    from bench.plan import Plan
    from bench.report.render import render
    from bench.train import train

    monkeypatch.chdir(tmp_path)
    plan = Plan("smoke", papers=["toyq"])
    table = plan.table("tables/smoke/toyq_t1")
    for r in plan.runs.values():
        train(r.id, r.config, layout.run_dir("smoke", r.id), progress=False)
    for key in table.eval_keys():
        ev = plan.evals[key]
        run_protocol("smoke", ev.run_id, plan.run(ev.run_id).config, ev.protocol_id, ev.protocol,
                     layout.eval_path("smoke", ev.run_id, ev.protocol_id), progress=False)
    render(plan, table)
    return plan, table, tmp_path


def test_the_index_lists_every_target_its_verdicts_and_claims(toy_rendered):
    from bench.report.index import build

    plan, table, root = toy_rendered
    path = build(plan)
    text = path.read_text()
    assert path == root / "tables/smoke/index.md" or str(path) == "tables/smoke/index.md"
    assert "[toyq t1](toyq_t1.md)" in text                       # a link to the report, relative to the index
    assert "6 not in paper, 2 cited" in text and "1 holds" in text
    assert "AT beats the quoted row" in text and "smoke scale; Toy:" in text
    assert "checks the plumbing only" in text                    # smoke verdicts are never findings


def test_explain_prints_runs_protocols_data_and_provenance(toy_rendered):
    from bench.report.explain import explain

    plan, table, _ = toy_rendered
    text = explain(plan, "tables/smoke/toyq_t1.md", "at.toy_strong.robust")
    for needle in ("run toy3d-pgd_at-", '"eps": 0.2', "protocol: {", "result: robust = ", "generated:hat_toy",
                   "checkpoints: best ", "runtime: {", "train.log", "implementation: bench.attacks.pgd"):
        assert needle in text, needle
    assert "quoted by the paper from Someone et al. 2019" in explain(plan, "tables/smoke/toyq_t1", "old.toy.clean")
    from bench.errors import SpecError

    with pytest.raises(SpecError, match="has no cell"):
        explain(plan, "tables/smoke/toyq_t1", "at.toy.accuracy")


def test_each_report_lists_the_choices_that_concern_it(toy_rendered, toy_spec):  # noqa: F811
    from bench.errors import SpecError
    from bench.plan import Plan
    from bench.report.render import render

    plan, _, root = toy_rendered
    t1 = (root / "tables/smoke/toyq_t1.md").read_text()
    assert "**everywhere**" in t1 and "only T2" not in t1
    render(plan, plan.table("tables/smoke/toyq_t2"))
    t2 = (root / "tables/smoke/toyq_t2.md").read_text()
    assert "**everywhere**" in t2 and "**only T2**" in t2
    toy_spec.write_text(toy_spec.read_text().replace("targets: [t2]", "targets: [t3]"))
    with pytest.raises(SpecError, match=r"choice 'only T2' names unknown tables/figures \['t3'\]"):
        Plan("smoke", papers=["toyq"])


def test_latex_is_paste_ready(toy_rendered):
    _, table, root = toy_rendered
    text = (root / "tables/smoke/toyq_t1.tex").read_text()
    assert r"\label{tab:toyq-t1-smoke}" in text and r"\resizebox{" in text
    assert "mean ± sample standard deviation over 1 seed (0)" in text or "mean $\\pm$ sample standard deviation over 1 seed (0)" in text
    assert "50.00$^\\dagger$" in text and "quoted from earlier work" in text
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed: the table's width is not compiled")
    doc = root / "paper.tex"
    doc.write_text("\\documentclass[twocolumn]{article}\\usepackage{booktabs,graphicx,amssymb}\n"
                   "\\begin{document}\n\\input{tables/smoke/toyq_t1.tex}\nText.\n\\end{document}\n")
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=root,
                         capture_output=True, text=True, timeout=120)
    log = (root / "paper.log").read_text(errors="replace")
    assert out.returncode == 0, out.stdout[-2000:]
    assert "Overfull \\hbox" not in log, "the table is wider than a column of a two-column page"


def test_tex_escapes_the_specs_symbols():
    assert tex("β = 6, ε = 8/255 (ℓ∞) — 85% & x_y") == \
        r"$\beta$ = 6, $\varepsilon$ = 8/255 ($\ell_\infty$) --- 85\% \& x\_y"
    assert all(ord(c) < 128 for c in tex("‖∇θℓ‖₂ ≥ 1 → ≈ × ÷ † … θ τ"))


def test_the_scale_is_read_from_a_target_path():
    assert scale_of_target("tables/mini/hat_table2.md") == "mini"
    assert scale_of_target("figures/smoke/bat_fig3.png") == "smoke"
    assert scale_of_target("tables/hat_table2.md") == "paper"


# ---- one box, many GPUs --------------------------------------------------------------------

LEASE = """
import sys, time
from bench import devices
print(devices.lease(int(sys.argv[1]), sys.argv[2], poll=0.05, timeout=float(sys.argv[3])), flush=True)
time.sleep(float(sys.argv[4]))
"""


def test_each_job_leases_its_own_gpu(tmp_path):
    """Four jobs on a machine with three (fake) GPUs: three distinct devices at once; the fourth
    waits and gets the device of the first job that exits."""
    import sys

    script = tmp_path / "lease.py"
    script.write_text(LEASE)
    hold = [subprocess.Popen([sys.executable, str(script), "3", str(tmp_path / "leases"), "30", "3"],
                             stdout=subprocess.PIPE, text=True) for _ in range(3)]
    got = sorted(int(p.stdout.readline()) for p in hold)
    assert got == [0, 1, 2]
    late = subprocess.Popen([sys.executable, str(script), "3", str(tmp_path / "leases"), "30", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = late.communicate(timeout=60)
    assert int(out) in (0, 1, 2) and "waiting for one" in err
    for p in hold:
        p.wait(timeout=30)
    quick = subprocess.run([sys.executable, str(script), "3", str(tmp_path / "leases"), "0", "0"],
                           capture_output=True, text=True, timeout=60)
    assert quick.returncode == 0 and int(quick.stdout) == 0   # leases die with their processes


def test_bench_device_overrides_the_lease(monkeypatch):
    from bench import devices

    monkeypatch.setenv("BENCH_DEVICE", "cuda:7")
    assert devices.choose(4) == "cuda:7"
    monkeypatch.delenv("BENCH_DEVICE")
    assert devices.choose(0) == "cpu" and devices.choose(1) == "cuda"


def test_the_nightly_workflow_regresses_the_mini_scale_on_a_gpu_runner():
    import yaml

    from conftest import REPO

    wf = yaml.safe_load((REPO / ".github/workflows/nightly.yml").read_text())
    gpu, cpu = wf["jobs"]["gpu"], wf["jobs"]["cpu"]
    assert "self-hosted" in gpu["runs-on"] and "gpu" in gpu["runs-on"]
    runs = lambda job: " ".join(s.get("run", "") for s in job["steps"])   # noqa: E731
    assert " mini " in runs(gpu) and "bench regress --all --scale mini" in runs(gpu)
    assert "pytest" in runs(cpu) and "smoke" in runs(cpu)
    assert any("cron" in s for s in wf[True]["schedule"])     # YAML reads the key `on` as True
