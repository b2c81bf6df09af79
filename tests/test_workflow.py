"""The Snakemake workflow and the CLI end to end."""
from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def sh(*args, cwd=None, env=None, check=True):
    out = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    if check and out.returncode:
        raise AssertionError(f"{args} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def snakemake(workdir, *args, env=None, check=True):
    return sh(sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
              str(workdir), *args, env=env, check=check)


def test_bench_targets_lists_every_scale():
    out = sh("bench", "targets").stdout.split()
    assert {"tables/hat_table2.md", "tables/smoke/hat_table2.md", "tables/mini/hat_table2.md"} <= set(out)


def test_bench_published_csv():
    rows = list(csv.DictReader(io.StringIO(sh("bench", "published", "--csv").stdout)))
    assert list(rows[0]) == ["paper", "table", "setting", "row", "column", "value", "std", "cited"]
    hat = [r for r in rows if r["paper"] == "hat" and r["table"] == "table2"]
    assert len(hat) == 38 and all(r["std"] == "" for r in hat)


def test_paper_scale_dry_run_shows_the_whole_graph(tmp_path):
    out = snakemake(tmp_path, "-n", "tables/hat_table2.md").stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))
    assert counts["train"] == "57" and counts["evaluate"] == "57" and counts["render_table"] == "1"
    assert "aa-" in out and "tinyimagenet200-hat-preact_resnet18" in out


def test_jobs_run_the_code_of_the_snakefile_that_planned_them(tmp_path):
    # one editable install, two checkouts: a job must import bench from the Snakefile's checkout
    out = snakemake(tmp_path, "-n", "-p", "tables/smoke/hat_table2.md").stdout
    train = next(line.split("Shell command:")[-1].strip() for line in out.splitlines() if " -m bench train " in line)
    assert train.startswith(f'PYTHONPATH="{REPO}${{PYTHONPATH:+:$PYTHONPATH}}" "{sys.executable}" -m bench train ')
    env = {**os.environ, "PYTHONPATH": "/elsewhere"}
    code = "import bench, os, pathlib; print(pathlib.Path(bench.__file__).resolve().parent.parent, os.environ['PYTHONPATH'])"
    shown = subprocess.run(["bash", "-c", train.split(" -m bench ")[0] + f' -c "{code}"'], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    assert shown == [str(REPO.resolve()), f"{REPO}:/elsewhere"]


def test_missing_data_stops_before_any_job(tmp_path):
    env = {"BENCH_DATA": str(tmp_path / "nodata")}
    out = snakemake(tmp_path, "--cores", "1", "tables/mini/hat_table2.md", env=env, check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "cifar-10-batches-py" in text and "partial=1" in text
    assert not (tmp_path / "tables").exists() and not Path(os.environ["BENCH_RESULTS"]).exists()


def test_dry_run_shows_what_partial_would_run(tmp_path):
    env = {"BENCH_DATA": str(tmp_path / "nodata")}
    full = snakemake(tmp_path, "-n", "tables/mini/hat_table2.md", env=env)
    partial = snakemake(tmp_path, "-n", "tables/mini/hat_table2.md", "--config", "partial=1", env=env)
    assert "a real run would stop here" in full.stderr and "svhn-hat-preact_resnet18" in full.stdout
    assert "partial=1 leaves out its cells" in partial.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", partial.stdout, re.M))
    assert "train" not in counts and "evaluate" not in counts and counts["render_table"] == "1"


def test_missing_extra_data_and_checkpoint_stop_before_any_job(tmp_path):
    env = {"BENCH_DATA": str(tmp_path / "nodata")}
    out = snakemake(tmp_path, "--cores", "1", "tables/mini/hat_table4.md", env=env, check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "ti_500K_pseudo_labeled.pickle" in text
    assert "robustbench/cifar10/Linf/Sehwag2021Proxy_R18.pt" in text and "semisup-adv" in text
    assert not (tmp_path / "tables").exists() and not Path(os.environ["BENCH_RESULTS"]).exists()


def test_smoke_table4_evaluates_a_robustbench_architecture_and_trains_on_mixed_batches(tmp_path):
    env = {"BENCH_RESULTS": str(tmp_path / "results"), "BENCH_CACHE": str(tmp_path / "cache")}
    snakemake(tmp_path, "--cores", "2", "tables/smoke/hat_table4.md", env=env)
    md = (tmp_path / "tables/smoke/hat_table4.md").read_text()
    for needle in ("`ti500k`: synthetic, **SUBSTITUTE**", "extra training data",
                   "robustbench:cifar10/Linf/Sehwag2021Proxy_R18: its architecture with random weights",
                   "| 85.02 |", "| 84.38 |", "| 87.66 | ", "+ 1280 extra images (ti500k, 0.5 of every batch)"):
        assert needle in md, needle
    runs = sorted(p.name for p in (tmp_path / "results/smoke/runs").iterdir())
    assert len(runs) == 4 and sum("-pretrained-Sehwag2021Proxy_R18-" in r for r in runs) == 1   # + the helper


def test_bad_input_is_one_clear_error(tmp_path):
    out = sh("bench", "train", "--scale", "smoke", "no-such-run", check=False)
    assert out.returncode == 2 and "not in the smoke plan" in out.stderr and "Traceback" not in out.stderr
    out = sh("bench", "plan", "--scale", "huge", check=False)
    assert out.returncode == 2 and "unknown scale 'huge'" in out.stderr
    out = snakemake(tmp_path, "-n", "tables/smoke/hat_table9.md", check=False)
    assert out.returncode != 0 and "hat_table9" in out.stdout + out.stderr


@pytest.mark.parametrize("option,message", [
    ("amp=fp16", "'fp16' is not one of ['none', 'bf16']"),
    ("partal=1", "Additional properties are not allowed ('partal' was unexpected)"),
    ("threads=two", "'two' is not of type 'integer'"),
    ("zygote=2", "2 is not one of [0, 1, True, False]"),
])
def test_bad_config_is_one_clear_error_before_any_job(tmp_path, option, message):
    out = snakemake(tmp_path, "--cores", "1", "--config", option, "--", "tables/smoke/hat_table3.md", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "Error validating config file" in text and message in text, text[-3000:]
    assert not (tmp_path / "tables").exists() and not Path(os.environ["BENCH_RESULTS"]).exists()


@pytest.fixture(scope="module")
def smoke_build(tmp_path_factory):
    work = tmp_path_factory.mktemp("smoke")
    env = {"BENCH_RESULTS": str(work / "results"), "BENCH_CACHE": str(work / "cache")}
    out = snakemake(work, "--cores", "2", "tables/smoke/hat_table2.md", env=env)
    (work / "snakemake.log").write_text(out.stdout + out.stderr)
    return work


def test_smoke_table2_builds_and_reports_every_published_number(smoke_build):
    md = (smoke_build / "tables/smoke/hat_table2.md").read_text()
    published = [r for r in csv.DictReader(io.StringIO(sh("bench", "published", "--csv").stdout))
                 if r["paper"] == "hat" and r["table"] == "table2"]
    comparison = md.split("## Cell by cell")[1].split("## Claims")[0]
    for r in published:
        assert f"| {float(r['value']):.2f} |" in comparison, r
    assert "(n=2)" in comparison and "scale ≠ paper" in comparison   # smoke runs 2 of the 3 seeds
    assert "not run" not in comparison
    for needle in ("smoke", "git commit", "pyautoattack 0.2.0", "SUBSTITUTE", "sha256", "## Claims"):
        assert needle in md
    rows = list(csv.DictReader(open(smoke_build / "tables/smoke/hat_table2.csv")))
    assert len(rows) == 40 and sum(r["mean"] != "" for r in rows) == 38
    tex = (smoke_build / "tables/smoke/hat_table2.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and "(84.90)" in tex
    # the build's jobs were forked from the zygote (bench/zygote.py), but those (at most one per
    # core) that started while it was still importing torch
    forked = re.search(r"bench.zygote: (\d+) job\(s\) forked", (smoke_build / "snakemake.log").read_text())
    from bench import zygote

    assert (forked and 70 <= int(forked.group(1)) <= 77) or not zygote.supported()


def test_smoke_build_is_up_to_date_and_shares_the_helper(smoke_build):
    env = {"BENCH_RESULTS": str(smoke_build / "results"), "BENCH_CACHE": str(smoke_build / "cache")}
    out = snakemake(smoke_build, "-n", "tables/smoke/hat_table2.md", env=env).stdout
    assert "Nothing to be done" in out
    runs = list((smoke_build / "results/smoke/runs").iterdir())
    assert len(runs) == 38 and all((r / "run.json").exists() for r in runs)   # 19 cells × 2 seeds


def test_a_deleted_checkpoint_is_rewritten_when_a_job_needs_it(smoke_build):
    """best.pt is an output of the train job and an input of the evaluations that read it:
    once one of them has to run (here: as after an evaluation failed on a damaged checkpoint,
    its result and the table are absent), Snakemake reruns the train job first, which rewrites
    best.pt from state.pt without training. (Before, the evaluation ran and failed on the
    missing file.)"""
    import torch

    env = {"BENCH_RESULTS": str(smoke_build / "results"), "BENCH_CACHE": str(smoke_build / "cache")}
    run = next(p for p in sorted((smoke_build / "results/smoke/runs").iterdir()) if "-pgd_at-" in p.name)
    before = torch.load(run / "best.pt", weights_only=True)
    (run / "best.pt").unlink()
    for result in [*(smoke_build / "results/smoke/evals" / run.name).glob("*.json"),
                   *(smoke_build / "tables/smoke").glob("hat_table2.*")]:
        result.unlink()
    dry = snakemake(smoke_build, "-n", "tables/smoke/hat_table2.md", env=env).stdout
    assert re.search(r"^train\s+1$", dry, re.M) and run.name in dry, dry[-3000:]
    snakemake(smoke_build, "--cores", "2", "tables/smoke/hat_table2.md", env=env)
    after = torch.load(run / "best.pt", weights_only=True)
    assert after["epoch"] == before["epoch"] and all(torch.equal(after["model"][k], v) for k, v in before["model"].items())
    assert "resuming after epoch 2/2" in (run / "train.log").read_text()
    assert "Nothing to be done" in snakemake(smoke_build, "-n", "tables/smoke/hat_table2.md", env=env).stdout


@pytest.mark.parametrize("profile", ["default", "slurm", "kubernetes"])
def test_workflow_profiles_dry_run(tmp_path, profile):
    """Each profile dry-runs the paper-scale graph here; the cluster ones need their executor plugin
    (the `cluster` extra). Kubernetes keeps results in S3: its dry run here swaps in the fs storage
    provider (S3 cannot be reached from this machine), the rest of the profile as shipped."""
    if profile != "default":
        pytest.importorskip(f"snakemake_executor_plugin_{profile}")
    extra = []
    if profile == "kubernetes":
        pytest.importorskip("snakemake_storage_plugin_fs")
        extra = ["--default-storage-provider", "fs", "--default-storage-prefix", str(tmp_path / "store")]
    out = snakemake(tmp_path, "--profile", str(REPO / "profiles" / profile), "-n", *extra,
                    "tables/hat_table2.md", env={**os.environ, "BENCH_DATA": str(tmp_path / "nodata")},
                    check=False)
    text = out.stdout + out.stderr
    assert "This was a dry-run" in text, text[-3000:]
    if profile == "slurm":   # the scale's GPU count reaches the executor; partition from the profile
        assert "gpu=1" in text and "slurm_partition=gpu" in text


def test_a_jobs_plan_is_cached_by_the_content_it_is_made_from(tmp_path, monkeypatch):
    """bench's jobs read their plan from <cache>/plans/ while nothing it is made from changed;
    a changed source file, scale or override is another entry; a damaged entry is rebuilt."""
    from bench import plan_cache
    from bench.plan import Plan

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    first = plan_cache.load("smoke")
    entries = list((tmp_path / "cache" / "plans").glob("smoke-*.pickle"))
    assert len(entries) == 1
    fresh = Plan("smoke")
    with monkeypatch.context() as m:   # a hit reads the entry and does not plan
        m.setattr(Plan, "__init__", lambda *a, **k: pytest.fail("planned again on a cache hit"))
        again = plan_cache.load("smoke")
    assert sorted(again.runs) == sorted(fresh.runs) == sorted(first.runs)
    assert {k: r.config for k, r in again.runs.items()} == {k: r.config for k, r in fresh.runs.items()}
    assert sorted(again.evals) == sorted(fresh.evals) and again.targets() == fresh.targets()
    assert plan_cache.digest("smoke", {}) != plan_cache.digest("smoke", {"amp": "bf16"})
    assert plan_cache.digest("smoke", {}) != plan_cache.digest("mini", {})
    entries[0].write_bytes(b"not a pickle")
    assert sorted(plan_cache.load("smoke").runs) == sorted(fresh.runs)
    assert entries[0].read_bytes()[:1] == b"\x80"          # replaced by a good entry
    package = tmp_path / "pkg"
    (package / "specs").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "specs" / "p.yaml").write_text("a: 1\n")
    monkeypatch.setattr(plan_cache, "PACKAGE", package)
    before = plan_cache.digest("smoke", {})
    (package / "specs" / "p.yaml").write_text("a: 2\n")
    after_spec = plan_cache.digest("smoke", {})
    (package / "a.py").write_text("x = 2\n")
    assert len({before, after_spec, plan_cache.digest("smoke", {})}) == 3


def test_an_evaluation_log_gets_progress_lines_not_carriage_returns():
    import io

    from tqdm import tqdm

    from bench.evaluate import LogLines

    log = io.StringIO()
    bar = tqdm(total=3, desc="run proto", file=LogLines(log), mininterval=0)
    for _ in range(3):
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) >= 4 and "3/3" in lines[-1]
