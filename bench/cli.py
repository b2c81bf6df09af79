"""The ``bench`` command: what the workflow can build, the published numbers, and the
three job kinds the Snakefile runs (train, evaluate, render)."""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys

from .errors import BenchError


def scale_of_target(target: str) -> str:
    """The scale a target path names: ``tables/mini/x.md`` → mini, ``tables/x.md`` → paper."""
    from . import layout, scales

    parts = target.replace("\\", "/").split("/")
    return parts[1] if len(parts) > 2 and parts[1] in scales.names() else layout.PAPER_SCALE


def _plan(args):
    from . import plan_cache

    if getattr(args, "scale", None) is None:   # inferred from the target path
        target = getattr(args, "target", None)
        if not target:
            raise BenchError(f"bench {args.command}: give --scale (smoke | mini | paper) or a target path")
        args.scale = scale_of_target(target)
    overrides = {k: v for k, v in (("amp", getattr(args, "amp", None)),
                                   ("channels_last", getattr(args, "channels_last", None)),
                                   ("compile", getattr(args, "compile", None))) if v and v != "none"}
    return plan_cache.load(args.scale, overrides)


def cmd_targets(args) -> None:
    from . import scales
    from .plan import Plan

    for scale in [args.scale] if args.scale else scales.names():
        for t in Plan(scale).targets():
            print(t)


def cmd_published(args) -> None:
    from . import specs
    from .plan_model import published_cells, quoted_rows

    w = csv.writer(sys.stdout, lineterminator="\n")
    if args.csv:
        w.writerow(["paper", "table", "setting", "row", "column", "value", "std", "cited"])
    for paper in specs.names():
        spec = specs.load(paper)
        cited = quoted_rows(spec)
        for table, setting, row, column, value, std in published_cells(spec):
            source = cited.get((table, row), "")
            fields = [paper, table, setting, row, column, value, "" if std is None else std, source]
            if args.csv:
                w.writerow(fields)
            else:
                print(f"{paper} {table} {setting}/{row}/{column}: {value}" + ("" if std is None else f" ± {std}")
                      + (f" (cited: {source})" if source else ""))


def cmd_validate(args) -> None:
    from . import scales, specs
    from .plan import Plan

    for scale in scales.names():
        plan = Plan(scale)
        print(f"{scale}: {len(specs.names())} spec(s) valid; {len(plan.runs)} runs, "
              f"{len(plan.evals)} evaluations, {len(plan.tables)} tables")


def cmd_plan(args) -> None:
    plan = _plan(args)
    tables = [plan.table(args.target)] if args.target else list(plan.tables.values())
    if args.cost:
        from .cost import estimate

        est = estimate(plan, tables)
        print(f"predicted device-hours at the {plan.scale_name} scale; throughput {est['rate'] / 1e12:.3g} TFLOP/s "
              f"effective ({est['source']}); AutoAttack counted per attack it runs (the standard version "
              f"{est['aa_passes']:.0f} forward passes per image, half the images still robust after its first "
              "attack); within about ×2")
        for t in est["targets"]:
            here = (f"; absent here: {', '.join(t['absent'])} (with partial=1: {t['hours_here']:.2f} h)"
                    if t["absent"] else "")
            print(f"  {t['target']}: {t['train_hours'] + t['eval_hours']:.2f} h ({t['runs']} runs {t['train_hours']:.2f} h, "
                  f"{t['evaluations']} evaluations {t['eval_hours']:.2f} h{here})")
        print(f"total: {est['total_hours']:.1f} h for {est['distinct_runs']} distinct runs (a run shared by targets "
              f"counted once)")
        return
    for t in tables:
        keys = t.eval_keys()
        runs = sorted({plan.evals[k].run_id for k in keys})
        print(f"{t.stem}: {len(runs)} runs, {len(keys)} evaluations, datasets {', '.join(t.datasets)}")
        if args.verbose:
            for r in runs:
                print("  run", r, json.dumps(plan.run(r).config, sort_keys=True) if args.verbose > 1 else "")
            for k in keys:
                print("  eval", k)


def _threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def cmd_train(args) -> None:
    from . import layout
    from .train import train

    plan = _plan(args)
    run = plan.run(args.run_id)
    _threads(args.threads)
    helpers = {k: layout.run_dir(args.scale, rid) for k, rid in run.requires.items()}
    train(run.id, run.config, layout.run_dir(args.scale, run.id), helpers, progress=not args.quiet)


def cmd_evaluate(args) -> None:
    from . import layout
    from .evaluate import run_protocol

    plan = _plan(args)
    ev = plan.evaluation(args.run_id, args.protocol_id)
    _threads(args.threads)
    run_protocol(args.scale, ev.run_id, plan.run(ev.run_id).config, ev.protocol_id, ev.protocol,
                 layout.eval_path(args.scale, ev.run_id, ev.protocol_id), progress=not args.quiet)


def cmd_render(args) -> None:
    from .data.locate import available
    from .report.render import render

    plan = _plan(args)
    table = plan.table(args.target)
    missing = {}
    if args.partial and plan.scale["data"]["source"] == "real":
        missing = {d: "absent" for d in table.datasets if not available(d)}
    for path in render(plan, table, missing):
        print(path)


def _missing(plan, table) -> list[str]:
    """The data a target needs that the data root lacks (none at a synthetic scale)."""
    from .data.locate import available

    if plan.scale["data"]["source"] != "real":
        return []
    return [d for d in table.datasets if not available(d)]


def cmd_index(args) -> None:
    from .report.index import build

    plan = _plan(args)
    missing = {t.stem: m for t in plan.tables.values() if (m := _missing(plan, t))}
    if args.partial:   # rendered with partial=1: the present cells count, the absent ones are listed
        missing = {}
    print(build(plan, missing))


def cmd_explain(args) -> None:
    from .report.explain import explain

    print(explain(_plan(args), args.target, args.cell, verbose=args.verbose), end="")


def cmd_speed(args) -> None:
    from .speed import run

    _threads(args.threads)
    out = run(size=args.quick or "full", methods=args.methods or None, amp=args.amp or "none",
              compile_modes=("none",) if args.no_compile else ("none", "auto"))
    print(f"written: {out['path']}")


def cmd_pin(args) -> None:
    from .report.aggregate import collect
    from .report.regress import pin

    plan = _plan(args)
    table = plan.table(args.target)
    res = collect(plan, table, {d: "absent" for d in _missing(plan, table)})
    print(pin(table.stem, {name: {k: fp.get(k) for k in ("source", "exact", "sha256", "n_train", "tested")}
                           for name, fp in res.datasets.items()}))


def cmd_regress(args) -> None:
    from .report.regress import pinned_targets, regress

    if args.all == (args.target is not None):
        raise BenchError("bench regress: give a target or --all (with --scale)")
    if args.all and not args.scale:
        raise BenchError("bench regress --all: give --scale (smoke | mini | paper)")
    stems = pinned_targets(args.scale) if args.all else [_plan(args).table(args.target).stem]
    if not stems:
        raise BenchError(f"no pinned references at the {args.scale} scale (tests/reference/{args.scale}/)")
    failed = []
    for stem in stems:
        try:
            problems, label = regress(stem), "DRIFT"
        except BenchError as e:          # not rendered, or no pin made on this data: a failure too
            problems, label = [str(e)], "ERROR"
        for p in problems:
            print(f"{label} {stem}: {p}", file=sys.stderr)
        if problems:
            failed.append(f"{stem} ({len(problems)})")
        else:
            print(f"{stem}: matches the pinned reference")
    if failed:
        raise BenchError(f"{len(failed)} of {len(stems)} target(s) differ from their pinned references: "
                         + ", ".join(failed))


def cmd_data(args) -> None:
    from .data.catalog import DATASETS
    from .data.locate import available, check, checkpoint_path, data_root, is_checkpoint, locate, missing_message

    names = args.names
    if not names:   # every dataset, and every checkpoint the paper-scale specs evaluate
        from .plan import Plan

        plan = Plan("paper")
        names = DATASETS.names() + sorted({d for r in plan.runs.values() for d in plan.inputs(r) if is_checkpoint(d)})
    if args.action == "check":
        bad = 0
        for name in names:
            if not available(name):
                bad += 1
                print(f"{name}: MISSING\n{missing_message(name)}")
            elif is_checkpoint(name):
                print(f"{name}: checkpoint at {checkpoint_path(name)}")
            else:   # every file its reader will read, checked without decoding
                src, path = locate(name)
                problems, notes = check(src, path, DATASETS.get(name))
                bad += bool(problems)
                print(f"{name}: {src.format} at {path}" + (f" ({src.note})" if src.note else "")
                      + (f": {len(problems)} BAD" if problems else ""))
                for line in [f"  BAD {p}" for p in problems] + [f"  note: {n}" for n in notes]:
                    print(line)
        if bad and args.strict:
            raise SystemExit(1)
    elif args.action == "fingerprint":
        from .data.store import load

        for name in names:
            print(json.dumps(load(name).fingerprint))
    elif args.action == "download":
        from .data.download import download

        for name in names:
            download(name, data_root())


def _terminated(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def with_scale(sp, required=True):
        sp.add_argument("--scale", required=required, help="smoke | mini | paper (commands that take a target "
                                                          "infer it from the path: tables/mini/… is mini)")
        sp.add_argument("--amp", choices=["none", "bf16"], help="bf16 autocast (changes run ids)")
        sp.add_argument("--channels-last", action="store_true", help="channels_last memory format")
        sp.add_argument("--compile", choices=["none", "auto", "default", "reduce-overhead", "max-autotune"],
                        help="torch.compile the training and attack steps (changes run ids)")
        return sp

    def command(name: str, fn, summary: str, description: str, scale: str | None = None):
        """A subcommand with a one-line ``help`` (in ``bench -h``) and a ``description`` (in
        ``bench <name> -h``); ``scale``: "required", "target" (inferred from the target path) or None."""
        sp = sub.add_parser(name, help=summary, description=f"{summary}. {description}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        if scale:
            with_scale(sp, required=scale == "required")
        sp.set_defaults(fn=fn)
        return sp

    sp = command("targets", cmd_targets, "every target path the workflow can build, one per line",
                 "Lists the tables and figures of every paper at every scale (or --scale's).")
    sp.add_argument("--scale")
    sp = command("published", cmd_published, "every transcribed published number",
                 "The numbers printed in the papers, as the specs hold them, with their ± where printed.")
    sp.add_argument("--csv", action="store_true", help="CSV: paper,table,setting,row,column,value,std,cited "
                                                          "(cited: the source of a number the paper quotes from earlier work)")
    command("validate", cmd_validate, "validate every spec and scale",
            "Checks every spec against its schema and every component parameter, at every scale, and "
            "prints the size of each plan.")
    sp = command("plan", cmd_plan, "the runs and evaluations behind the targets",
                 "With a target, only its own; -v lists them, -vv with their resolved configs.", scale="target")
    sp.add_argument("target", nargs="?")
    sp.add_argument("-v", "--verbose", action="count", default=0)
    sp.add_argument("--cost", action="store_true", help="predicted device-hours (bench/cost.py)")
    for name, fn, extra, what in (("train", cmd_train, [], "Trains (or resumes) a planned run: results/<scale>/runs/<id>/."),
                                  ("evaluate", cmd_evaluate, ["protocol_id"],
                                   "Evaluates a finished run under a protocol: results/<scale>/evals/<id>/<protocol>.json.")):
        sp = command(name, fn, f"{name} one planned run (the Snakefile calls this)", what, scale="required")
        sp.add_argument("run_id")
        for e in extra:
            sp.add_argument(e)
        sp.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 0)) or None)
        sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp = command("render", cmd_render, "render a target (md, tex, csv; figures also png, pdf)",
                 "Reads the target's evaluations, checks each against its run and data, and writes the reports.",
                 scale="target")
    sp.add_argument("target")
    sp.add_argument("--partial", action="store_true", help="render absent datasets' cells as not run")
    sp = command("index", cmd_index, "the verdict index of a scale (tables/[<scale>/]index.md)",
                 "Every table and figure of every paper with its verdict counts, and every claim with its "
                 "verdict and the budget it was checked at, linking to the reports.", scale="required")
    sp.add_argument("--partial", action="store_true", help="targets were rendered with partial=1")
    sp = command("explain", cmd_explain, "everything behind one cell of a target",
                 "The runs (resolved configs, checkpoints, data fingerprints, runtime, logs) and evaluations "
                 "(protocols, results, implementations) behind a cell, e.g.\n"
                 "  bench explain tables/smoke/hat_table2.md hat.cifar10.clean", scale="target")
    sp.add_argument("target")
    sp.add_argument("cell", help="row.setting.column, as in the claims")
    sp.add_argument("-v", "--verbose", action="store_true", help="with the full resolved configs")
    sp = command("speed", cmd_speed, "training and evaluation throughput on this device",
                 "Images/s of each method's training step (eager and compiled) on ResNet-18 and WRN-34-10 at batch "
                 "128, against a plain reference-style loop on the same model and batch, as ratios; PGD-20 and "
                 "AutoAttack throughput. --quick [smoke|mini]: that scale's networks, for a CPU. Writes "
                 "results/speed/<device>.json (read by bench plan --cost).")
    sp.add_argument("--quick", nargs="?", const="smoke", choices=["smoke", "mini"],
                    help="a CPU: the smoke-size (default) or mini-size networks at batch 32, 3-step attacks")
    sp.add_argument("--methods", nargs="*", help="only these methods (default: every method)")
    sp.add_argument("--no-compile", action="store_true", help="eager only")
    sp.add_argument("--amp", choices=["none", "bf16"])
    sp.add_argument("--threads", type=int)
    sp = command("pin", cmd_pin, "pin a rendered table as the reference for `regress`",
                 "Copies the target's per-cell numbers to tests/reference/<scale>/.", scale="target")
    sp.add_argument("target")
    sp = command("regress", cmd_regress, "compare a rendered table with its pinned reference",
                 "Exits non-zero, naming every drifted cell, when a cell moved beyond its tolerance, or when "
                 "a target is not rendered or has no pin made on its data. --all: every target pinned at "
                 "--scale (the nightly job).", scale="target")
    sp.add_argument("target", nargs="?")
    sp.add_argument("--all", action="store_true", help="every target with a pinned reference at --scale")
    sp = command("data", cmd_data, "check, fingerprint or download datasets and checkpoints",
                 "Datasets by name, RobustBench checkpoints as robustbench:<dataset>/<threat model>/<id>. "
                 "`check` reads every file a dataset's reader needs (without decoding); --strict exits 1 "
                 "when any is missing or bad.")
    sp.add_argument("action", choices=["check", "fingerprint", "download"])
    sp.add_argument("names", nargs="*")
    sp.add_argument("--strict", action="store_true", help="exit 1 if any is missing or bad")

    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)   # a killed job cleans up like an interrupted one
    try:
        args.fn(args)
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:   # Ctrl-C (or SIGTERM): temporaries are already removed
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenPipeError:  # e.g. `bench published --csv | head`
        sys.stderr.close()
        raise SystemExit(0) from None


if __name__ == "__main__":
    main()
