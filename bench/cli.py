"""The ``bench`` command: what the workflow can build, the published numbers, and the
three job kinds the Snakefile runs (train, evaluate, render)."""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys

from .errors import BenchError


def _plan(args):
    from .plan import Plan

    overrides = {k: v for k, v in (("amp", getattr(args, "amp", None)),
                                   ("channels_last", getattr(args, "channels_last", None))) if v}
    return Plan(args.scale, overrides=overrides)


def cmd_targets(args) -> None:
    from . import scales
    from .plan import Plan

    for scale in [args.scale] if args.scale else scales.names():
        for t in Plan(scale).targets():
            print(t)


def cmd_published(args) -> None:
    from . import specs
    from .plan import published_cells

    w = csv.writer(sys.stdout, lineterminator="\n")
    if args.csv:
        w.writerow(["paper", "table", "setting", "row", "column", "value", "std"])
    for paper in specs.names():
        for table, setting, row, column, value, std in published_cells(specs.load(paper)):
            fields = [paper, table, setting, row, column, value, "" if std is None else std]
            if args.csv:
                w.writerow(fields)
            else:
                print(f"{paper} {table} {setting}/{row}/{column}: {value}" + ("" if std is None else f" ± {std}"))


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


def cmd_pin(args) -> None:
    from .report.regress import pin

    print(pin(_plan(args).table(args.target).stem))


def cmd_regress(args) -> None:
    from .report.regress import regress

    stem = _plan(args).table(args.target).stem
    problems = regress(stem)
    for p in problems:
        print(f"DRIFT {p}", file=sys.stderr)
    if problems:
        raise BenchError(f"{stem}: {len(problems)} cell(s) drifted from the pinned reference")
    print(f"{stem}: matches the pinned reference")


def cmd_data(args) -> None:
    from .data.catalog import DATASETS
    from .data.locate import available, checkpoint_path, data_root, is_checkpoint, locate, missing_message

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
            else:
                src, path = locate(name)
                print(f"{name}: {src.format} at {path}" + (f" ({src.note})" if src.note else ""))
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def with_scale(sp, required=True):
        sp.add_argument("--scale", required=required, help="smoke | mini | paper")
        sp.add_argument("--amp", choices=["none", "bf16"], help="bf16 autocast (changes run ids)")
        sp.add_argument("--channels-last", action="store_true", help="channels_last memory format")
        return sp

    sp = sub.add_parser("targets", help="every target path the workflow can build, one per line")
    sp.add_argument("--scale")
    sp.set_defaults(fn=cmd_targets)
    sp = sub.add_parser("published", help="every transcribed published number")
    sp.add_argument("--csv", action="store_true", help="CSV: paper,table,setting,row,column,value,std")
    sp.set_defaults(fn=cmd_published)
    sub.add_parser("validate", help="validate every spec and scale").set_defaults(fn=cmd_validate)
    sp = with_scale(sub.add_parser("plan", help="runs and evaluations behind the targets"))
    sp.add_argument("target", nargs="?")
    sp.add_argument("-v", "--verbose", action="count", default=0)
    sp.set_defaults(fn=cmd_plan)
    for name, fn, extra in (("train", cmd_train, []), ("evaluate", cmd_evaluate, ["protocol_id"])):
        sp = with_scale(sub.add_parser(name, help=f"{name} one planned run (the Snakefile calls this)"))
        sp.add_argument("run_id")
        for e in extra:
            sp.add_argument(e)
        sp.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 0)) or None)
        sp.add_argument("--quiet", action="store_true", help="no progress bar")
        sp.set_defaults(fn=fn)
    sp = with_scale(sub.add_parser("render", help="render a table target (md, tex, csv)"))
    sp.add_argument("target")
    sp.add_argument("--partial", action="store_true", help="render absent datasets' cells as not run")
    sp.set_defaults(fn=cmd_render)
    sp = with_scale(sub.add_parser("pin", help="pin a rendered table as the reference for `regress`"))
    sp.add_argument("target")
    sp.set_defaults(fn=cmd_pin)
    sp = with_scale(sub.add_parser("regress", help="compare a rendered table with its pinned reference"))
    sp.add_argument("target")
    sp.set_defaults(fn=cmd_regress)
    sp = sub.add_parser("data", help="check, fingerprint or download datasets (and RobustBench checkpoints: "
                                     "robustbench:<dataset>/<threat model>/<id>)")
    sp.add_argument("action", choices=["check", "fingerprint", "download"])
    sp.add_argument("names", nargs="*")
    sp.add_argument("--strict", action="store_true", help="exit 1 if any is missing")
    sp.set_defaults(fn=cmd_data)

    args = p.parse_args(argv)
    try:
        args.fn(args)
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except BrokenPipeError:  # e.g. `bench published --csv | head`
        sys.stderr.close()
        raise SystemExit(0) from None


if __name__ == "__main__":
    main()
