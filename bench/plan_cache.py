"""A job's plan, built once per content of everything a plan is made from.

Every job of a workflow (``bench train``, ``evaluate``, ``render``) plans its scale again, to
find its run or evaluation and to refuse one that is no longer in the plan; at the smoke scale
that was a tenth of a job. A plan is a pure function of the package's source, its specs and
scales, the versions of the packages it records, the scale and the precision overrides, so it
is pickled under a digest of all of them (``<cache>/plans/``) and read back while the digest
is unchanged: any edit to the code or a spec gives a new digest and a plan built afresh.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .layout import cache_root
from .plan_model import package_version
from .provenance import PACKAGE, hash_files

if TYPE_CHECKING:
    from .plan import Plan

RECORDED_PACKAGES = ("pyautoattack", "robustbench")   # the planner writes their versions into ids
KEEP = 4   # entries kept per scale (older code's plans are removed when a new one is stored)


def digest(scale: str, overrides: dict[str, Any]) -> str:
    """Of the package's source and the spec and scale files (paths and contents), the recorded
    package versions, the Python version (the pickle's), the scale and the overrides."""
    from . import scales, specs

    h = hashlib.sha256()
    files = {*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.yaml"), *specs.HERE.glob("*.yaml"),
             *scales.HERE.glob("*.yaml")}
    hash_files(h, files, lambda f: f"{f}\0{f.stat().st_size}\0".encode())   # unambiguous boundaries
    context = [scale, overrides, [package_version(n) for n in RECORDED_PACKAGES], sys.version]
    h.update(json.dumps(context, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def load(scale: str, overrides: dict[str, Any] | None = None) -> Plan:
    """``Plan(scale, overrides=overrides)``, from the cache when it holds this digest's plan."""
    from .fileio import atomic_write
    from .plan import Plan

    overrides = overrides or {}
    path = cache_root() / "plans" / f"{scale}-{digest(scale, overrides)}.pickle"
    if path.is_file():
        try:
            plan = pickle.loads(path.read_bytes())
            if isinstance(plan, Plan) and plan.scale_name == scale and plan.overrides == overrides:
                return plan
        except Exception:   # a damaged or foreign entry: plan afresh and replace it
            pass
    plan = Plan(scale, overrides=overrides)
    data = pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        older = sorted(path.parent.glob(f"{scale}-*.pickle"), key=lambda p: p.stat().st_mtime)[:-KEEP]
        for old in older:
            old.unlink(missing_ok=True)
    except OSError:   # a read-only cache, or an entry another job removed first
        pass
    return plan
