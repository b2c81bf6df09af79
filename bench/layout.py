"""Where things live on disk. The Snakefile and the CLI both use these paths.

results/<scale>/runs/<run_id>/      config.json, state.pt (resume), metrics.json,
                                    best.pt, last.pt, run.json (written last), train.log
results/<scale>/evals/<run_id>/<protocol_id>.json
tables/[<scale>/]<paper>_<table>.{md,tex,csv}   (paper scale at the top level)
figures/[<scale>/]<paper>_<figure>.{png,pdf,csv}
"""
from __future__ import annotations

import os
from pathlib import Path

PAPER_SCALE = "paper"


def results_root() -> Path:
    return Path(os.environ.get("BENCH_RESULTS", "results"))


def cache_root() -> Path:
    """Derived data kept between jobs (decoded datasets, checked specs, plans, FLOP counts)."""
    return Path(os.environ.get("BENCH_CACHE", "results/cache")).expanduser()


def run_dir(scale: str, run_id: str) -> Path:
    return results_root() / scale / "runs" / run_id


def eval_path(scale: str, run_id: str, protocol_id: str) -> Path:
    return results_root() / scale / "evals" / run_id / f"{protocol_id}.json"


def scale_prefix(scale: str) -> str:
    return "" if scale == PAPER_SCALE else f"{scale}/"


def target_stem(kind: str, scale: str, paper: str, name: str) -> str:
    """``tables/[<scale>/]<paper>_<name>`` or ``figures/…`` (kind "table" or "figure")."""
    return f"{kind}s/{scale_prefix(scale)}{paper}_{name}"
