# The job graph of the suite, derived from the paper specs (bench/specs/*.yaml) and
# the scales (bench/scales/*.yaml) by generic rules: train, evaluate, render_table, render_figure.
# No rule is written per table; a run needed by several targets is trained once.
#
#   snakemake --cores 2 smoke                      every target at the smoke scale
#   snakemake --cores 8 tables/hat_table2.md       one paper-scale table
#   snakemake -n tables/hat_table2.md              its whole job graph (dry run)
#
# Options (--config key=value; defaults in config/config.yaml, checked against
# config/config.schema.yaml before anything runs): partial=1 renders the cells whose
# datasets are present and marks the rest "not run"; amp=bf16 and channels_last=1 select
# the precision (they change run ids); threads=N sets CPU threads per job (default 1);
# zygote=0 starts every local job afresh instead of forking it from bench/zygote.py.
import os

from snakemake.utils import validate

from bench import layout, plan_cache, scales, zygote
from bench.data.locate import available, missing_message
from bench.errors import MissingDataError

configfile: os.path.join(workflow.basedir, "config", "config.yaml")
validate(config, "config/config.schema.yaml")   # an unknown key or a bad value: one error, no job

OVERRIDES = {}
if config["amp"] != "none":
    OVERRIDES["amp"] = config["amp"]
if config["channels_last"]:
    OVERRIDES["channels_last"] = True
COMPILE = {0: "none", 1: "auto"}.get(config["compile"], config["compile"])
if COMPILE != "none":
    OVERRIDES["compile"] = COMPILE
PARTIAL = bool(config["partial"])
THREADS = config["threads"]
FLAGS = "".join([f" --amp {OVERRIDES['amp']}" if "amp" in OVERRIDES else "",
                 " --channels-last" if OVERRIDES.get("channels_last") else "",
                 f" --compile {COMPILE}" if COMPILE != "none" else ""])
RESULTS = str(layout.results_root())
# Jobs run `python -m bench` from this workflow's own source (first on PYTHONPATH, so a second
# checkout beside an editable install runs its own code, the code this Snakefile planned with):
# by default with the interpreter that runs Snakemake, the caller's PYTHONPATH after it; with
# --software-deployment-method conda, with the python of the rule's conda environment (envs/bench.yaml).
CONDA = "conda" in {m.name.lower() for m in workflow.deployment_settings.deployment_method}
BENCH = (f'PYTHONPATH="{workflow.basedir}" python -m bench' if CONDA else
         f'PYTHONPATH="{workflow.basedir}${{PYTHONPATH:+:$PYTHONPATH}}" "{sys.executable}" -m bench')
ENV = "envs/bench.yaml"
ZYGOTE = []


# Local jobs fork from one process that imported torch once (bench/zygote.py: 2.3 s of every
# job here); cluster jobs and a conda environment's python run alone, as does any job that
# cannot reach it.
onstart:
    if config["zygote"] and zygote.supported() and workflow.local_exec and workflow.is_main_process and not CONDA:
        proc, os.environ["BENCH_ZYGOTE"] = zygote.start(workflow.basedir)
        ZYGOTE.append((proc, os.environ["BENCH_ZYGOTE"]))


def _stop_zygote():
    while ZYGOTE:
        zygote.stop(*ZYGOTE.pop())


onsuccess:
    _stop_zygote()


onerror:
    _stop_zygote()


class Plans(dict):
    """The plan of each scale, built (and every spec validated against it) the first time a
    target of that scale is asked for, so `snakemake tables/smoke/x.md` plans one scale only."""

    def __missing__(self, scale):
        plan = self[scale] = plan_cache.load(scale, OVERRIDES)
        return plan


PLANS = Plans()
SCALES = scales.names()
REDUCED = [s for s in SCALES if s != layout.PAPER_SCALE]


def scale_of(prefix):
    return prefix.rstrip("/") or layout.PAPER_SCALE


wildcard_constraints:
    scale="|".join(SCALES),
    prefix="(" + "|".join(f"{s}/" for s in REDUCED) + ")?",
    name=r"[a-z0-9]+_[A-Za-z0-9]+",
    run=r"[A-Za-z0-9_.\-]+",
    protocol=r"[A-Za-z0-9_\-]+",


def every_target(scale):
    """Every target of a scale and its verdict index (input functions: planned when asked for)."""
    return lambda wc: [*PLANS[scale].targets(), f"tables/{layout.scale_prefix(scale)}index.md"]


rule all:
    input: every_target(layout.PAPER_SCALE)


for _scale in REDUCED:
    rule:
        name: _scale
        input: every_target(_scale)


def target_inputs(wc, kind):
    scale = scale_of(wc.prefix)
    plan = PLANS[scale]
    table = plan.table(f"{kind}s/{wc.prefix}{wc.name}")
    keep = set(table.datasets)
    if plan.scale["data"]["source"] == "real":
        missing = [d for d in table.datasets if not available(d)]
        if missing and PARTIAL:
            keep -= set(missing)
            if workflow.dryrun:
                print(f"note: {table.stem} needs absent data {', '.join(missing)}; partial=1 "
                      f"leaves out its cells (rendered as not run)", file=sys.stderr)
        elif missing and workflow.dryrun:
            print(f"note: {table.stem} needs absent data {', '.join(missing)}; a real run "
                  f"would stop here (or use --config partial=1)", file=sys.stderr)
        elif missing:
            raise MissingDataError(
                f"{table.stem} needs data (datasets or model checkpoints) that are not under the data root:\n"
                + "\n".join(missing_message(d) for d in missing)
                + "\nProvide them, or render the cells that can run with --config partial=1.")
    return [layout.eval_path(scale, *key.split("/")) for key in table.eval_keys(keep)]


rule render_table:
    input: lambda wc: target_inputs(wc, "table")
    output:
        md=report("tables/{prefix}{name}.md", caption="bench/report/captions/table.rst", category="Tables",
                  labels={"target": "{prefix}{name}"}),
        tex="tables/{prefix}{name}.tex",
        csv="tables/{prefix}{name}.csv",
    log: f"{RESULTS}/logs/tables/{{prefix}}{{name}}.log"
    params:
        bench=BENCH,
        flags=FLAGS,
        scale=lambda wc: scale_of(wc.prefix),
        partial=" --partial" if PARTIAL else "",
    conda: ENV
    shell:
        "{params.bench} render --scale {params.scale}{params.partial}{params.flags} "
        "tables/{wildcards.prefix}{wildcards.name} > {log} 2>&1"


rule render_figure:
    input: lambda wc: target_inputs(wc, "figure")
    output:
        png=report("figures/{prefix}{name}.png", caption="bench/report/captions/figure.rst", category="Figures",
                   labels={"target": "{prefix}{name}"}),
        pdf="figures/{prefix}{name}.pdf",
        csv="figures/{prefix}{name}.csv",
        cells="figures/{prefix}{name}.cells.csv",
        md="figures/{prefix}{name}.md",
    log: f"{RESULTS}/logs/figures/{{prefix}}{{name}}.log"
    params:
        bench=BENCH,
        flags=FLAGS,
        scale=lambda wc: scale_of(wc.prefix),
        partial=" --partial" if PARTIAL else "",
    conda: ENV
    shell:
        "{params.bench} render --scale {params.scale}{params.partial}{params.flags} "
        "figures/{wildcards.prefix}{wildcards.name} > {log} 2>&1"


def index_inputs(wc):
    """The targets of a scale that can be built with the data at hand (all with partial=1)."""
    plan = PLANS[scale_of(wc.prefix)]
    real = plan.scale["data"]["source"] == "real"
    tables = [t for t in plan.tables.values()
              if PARTIAL or not real or all(available(d) for d in t.datasets)]
    return [t.target for t in tables]


rule index:
    input: index_inputs
    output: report("tables/{prefix}index.md", caption="bench/report/captions/index.rst", category="Index")
    log: f"{RESULTS}/logs/tables/{{prefix}}index.log"
    params:
        bench=BENCH,
        flags=FLAGS,
        scale=lambda wc: scale_of(wc.prefix),
        partial=" --partial" if PARTIAL else "",
    conda: ENV
    shell:
        "{params.bench} index --scale {params.scale}{params.partial}{params.flags} > {log} 2>&1"


def _resources(kind, key, default=0):
    return lambda wc: PLANS[wc.scale].resources(kind, wc.run).get(key, default)


def checkpoint_file(scale, run, which):
    """A run's checkpoint as a train job's output (best, last; snapshots epoch<k> are not)."""
    return [f"{RESULTS}/{scale}/runs/{run}/{which}.pt"] if which in ("best", "last") else []


def eval_inputs(wc):
    ev = PLANS[wc.scale].evaluation(wc.run, wc.protocol)
    files = [f"{RESULTS}/{wc.scale}/runs/{r}/run.json" for r in [wc.run, *ev.requires.values()]]
    if "probe" not in ev.protocol and "history" not in ev.protocol:   # the checkpoints it reads: a deleted one reruns its train job
        files += checkpoint_file(wc.scale, wc.run, ev.protocol.get("checkpoint", "best"))
        for h in ev.protocol.get("helpers", {}).values():
            files += checkpoint_file(wc.scale, h["run"], h["checkpoint"])
    return files


rule evaluate:
    input: eval_inputs
    output: f"{RESULTS}/{{scale}}/evals/{{run}}/{{protocol}}.json"
    log: f"{RESULTS}/{{scale}}/evals/{{run}}/{{protocol}}.log"
    threads: THREADS
    resources:
        gpu=_resources("evaluate", "gpu"),
        mem_mb=_resources("evaluate", "mem_mb", 4000),
        runtime=_resources("evaluate", "runtime", 60),
    params:
        bench=BENCH,
        flags=FLAGS,
    conda: ENV
    shell:
        "{params.bench} evaluate --scale {wildcards.scale}{params.flags} --threads {threads} "
        "{wildcards.run} {wildcards.protocol} 2>> {log}"


# A run's checkpoints are outputs of its train job, and inputs of the jobs that read them
# (evaluations, helper and init runs), so a deleted best.pt or last.pt reruns the job, which
# rewrites them from state.pt without training.
def train_inputs(wc):
    required = PLANS[wc.scale].run(wc.run).requires.values()   # helper and init runs: their best.pt
    return [f for r in required for f in [f"{RESULTS}/{wc.scale}/runs/{r}/run.json", *checkpoint_file(wc.scale, r, "best")]]


rule train:
    input: train_inputs
    output:
        f"{RESULTS}/{{scale}}/runs/{{run}}/run.json",
        f"{RESULTS}/{{scale}}/runs/{{run}}/best.pt",
        f"{RESULTS}/{{scale}}/runs/{{run}}/last.pt",
    log: f"{RESULTS}/{{scale}}/runs/{{run}}/train.log"
    threads: THREADS
    resources:
        gpu=_resources("train", "gpu"),
        mem_mb=_resources("train", "mem_mb", 4000),
        runtime=_resources("train", "runtime", 60),
    params:
        bench=BENCH,
        flags=FLAGS,
    conda: ENV
    shell:
        "{params.bench} train --scale {wildcards.scale}{params.flags} --threads {threads} {wildcards.run} 2>> {log}"
