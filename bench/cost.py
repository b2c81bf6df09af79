"""``bench plan --cost``: the device-hours a target will take, predicted before it runs.

The prediction counts the work from the plan and divides it by a measured throughput:
  work of a run      = epochs × training images × passes per image × F(model)
  work of an evaluation = test images × passes per image × F(model)
where F is the model's forward FLOPs at the dataset's image size (counted once with torch's
FLOP counter on the meta device, cached), and a pass is one forward-equivalent: an attack
step costs 2 (forward and input gradient), a training forward with its backward 3, a
forward without gradients 1. The method declares its own passes outside the attack
(``Method.train_passes``). AutoAttack is counted per attack it runs (bench/attacks/autoattack.py:
its ``attacks``, ``n_iter`` and ``n_queries``): the first on every image, the others on the half
still robust (an assumption, stated in the output); APGD 2 passes per iteration, APGD-T and
FAB-T that for each of 9 target classes (FAB 3 per iteration: a forward, a backward, a check),
Square one forward per query. The standard version comes to about 5,000 passes per image.

The throughput (effective FLOP/s of this device and precision) comes from, in order: this
device's ``bench speed`` result (results/speed/<device>.json: the PGD-AT rows' images/s ×
their passes × F), or the median of the suite's own finished runs on this device (run.json's
measured images/s × passes × F, with the mean steps a run records (FAT's bp) in place of its
attack's K; per model where that model ran, the plan's scale first otherwise; evaluations at
the rate this device's finished evaluations reached), or, with neither, an assumed
100 TFLOP/s (an H100 in bf16 near its practical bound for ResNet-sized convolutions; 0.1 on a
CPU), said so in the output. The prediction is within a
factor of about two; a run shared by several targets is counted once in a total.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import Any

from . import layout
from .plan import Plan
from .plan_model import Table, canonical

# AutoAttack (pyautoattack's standard version): forward-equivalents per image and iteration/query
AA_STANDARD = {"attacks": ["apgd-ce", "apgd-t", "fab-t", "square"], "n_iter": 100, "n_queries": 5000}
AA_PER_STEP = {"apgd-ce": 2.0, "apgd-dlr": 2.0, "apgd-t": 2.0 * 9, "fab": 3.0, "fab-t": 3.0 * 9, "square": 1.0}
AA_ROBUST_AFTER_FIRST = 0.5
ASSUMED_FLOPS = 100e12
ASSUMED_CPU_FLOPS = 0.1e12     # one single-threaded job: 0.08–0.2 measured on an AMD EPYC core


def _flops_cache() -> Path:
    from .layout import cache_root

    return cache_root() / "flops.json"


@lru_cache(maxsize=None)
def forward_flops(model_json: str, num_classes: int, shape: tuple[int, ...]) -> float:
    """Forward FLOPs of one image through the model (cached on disk by its config)."""
    path = _flops_cache()
    key = f"{model_json}|{num_classes}|{shape}"
    cache = json.loads(path.read_text()) if path.exists() else {}
    if key not in cache:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from .models import build

        with torch.device("meta"):
            model = build(json.loads(model_json), num_classes, shape[0])
            x = torch.empty(1, *shape)
        with FlopCounterMode(display=False) as counter:
            model(x)
        cache[key] = float(counter.get_total_flops())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=1, sort_keys=True))
    return cache[key]


def attack_passes(attack: dict[str, Any] | None) -> float:
    """Forward-equivalents per image of an attack (training or evaluation)."""
    if not attack or attack.get("name") == "none":
        return 0.0
    if attack.get("name") == "autoattack":
        return autoattack_passes(attack)
    steps = attack.get("steps", 1 if attack.get("name") in ("fgsm", "fgsm_rs") else 10)
    if attack.get("name") == "pgd_es":
        # early-stopped PGD-K-τ: an example stops once misclassified τ + 1 times; FAT's mini runs
        # here took about τ + 2 steps on average (their recorded bp), more as training goes on
        # (FAT's Fig. 5): a prediction, corrected by the bp a finished run records
        steps = min(steps, attack.get("tau", 0) + 2)
    return 2.0 * steps * attack.get("restarts", 1)


def autoattack_passes(attack: dict[str, Any]) -> float:
    """Forward-equivalents per test image of an AutoAttack evaluation (see the module's docstring)."""
    attacks = attack.get("attacks") or AA_STANDARD["attacks"]
    n_iter = attack.get("n_iter") or AA_STANDARD["n_iter"]
    n_queries = attack.get("n_queries") or AA_STANDARD["n_queries"]
    out = 0.0
    for i, name in enumerate(attacks):
        steps = n_queries if name == "square" else n_iter
        out += AA_PER_STEP.get(name, 2.0) * steps * (1.0 if i == 0 else AA_ROBUST_AFTER_FIRST)
    return out


def run_passes(cfg: dict[str, Any]) -> float:
    from .methods import METHODS

    if "pretrained" in cfg:
        return 0.0
    cls = METHODS.get(cfg["method"]["name"])
    return cls.train_passes + attack_passes(cls.training_attack(cfg.get("attack")))


def _images(cfg: dict[str, Any], split: str) -> int:
    from .data.catalog import DATASETS

    info = DATASETS.get(cfg["dataset"])
    full = info.n_train if split == "train" else info.n_test
    if cfg["data"]["source"] == "synthetic":
        full = cfg["data"].get("synthetic_size", [512, 256])[0 if split == "train" else 1]
    return min(full, cfg["data"].get("n_train") or full) if split == "train" else full


def run_flops(plan: Plan, run_id: str) -> float:
    from .data.catalog import DATASETS

    cfg = plan.run(run_id).config
    info = DATASETS.get(cfg["dataset"])
    f = forward_flops(canonical(cfg["model"]), info.num_classes, tuple(info.shape))
    per_epoch = _images(cfg, "train") * run_passes(cfg)
    selection = cfg.get("selection", {})
    sel_images = (selection.get("n_test") or info.n_test) * (1 + attack_passes(selection.get("attack")))
    return f * (cfg.get("epochs", 0) * per_epoch + sel_images * cfg.get("epochs", 0))


def eval_flops(plan: Plan, key: str) -> float:
    from .data.catalog import DATASETS

    ev = plan.evals[key]
    cfg = plan.run(ev.run_id).config
    info = DATASETS.get(cfg["dataset"])
    proto = ev.protocol
    if "probe" in proto or "history" in proto:
        return 0.0
    f = forward_flops(canonical(cfg["model"]), info.num_classes, tuple(info.shape))
    n = proto.get("n_test") or _images(cfg, "test")
    attack = proto.get("attack") or (proto.get("measure") or {}).get("attack")
    passes = 1 + attack_passes(attack if isinstance(attack, dict) else None)
    if "measure" in proto and not isinstance(attack, dict):
        passes += 20.0   # a measure with its own default attack (margins, corruptions): a PGD-10-sized allowance
    return f * n * passes


def this_device() -> str:
    """The device this machine's jobs compute on (``BENCH_DEVICE`` if set, as bench/devices.py
    chooses it, without taking a lease), named as run.json and ``bench speed`` name it."""
    import os

    import torch

    from .provenance import device_label

    name = os.environ.get("BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        return "a GPU (none here)"   # BENCH_DEVICE=cuda without one: a GPU's prediction, at the assumed throughput
    return device_label(name)


def run_device(info: dict[str, Any]) -> str | None:
    """The device a finished run trained on (from its run.json), or None for an older record."""
    env, dev = info.get("environment") or {}, str((info.get("config") or {}).get("device", ""))
    if dev.startswith("cuda"):
        return env.get("cuda_device")
    return f"CPU {env['cpu']}" if dev == "cpu" and env.get("cpu") else None


@dataclass
class Rates:
    """Effective FLOP/s on a device: a default, and per model (canonical config) where this
    device has measured that model (a small network uses a device less well than a large one);
    evaluations apart where finished evaluations measured them (an evaluation job runs other
    kernels, batch sizes and start-up than a training epoch)."""
    default: float
    source: str
    by_model: dict[str, float] = field(default_factory=dict)
    eval_by_model: dict[str, float] = field(default_factory=dict)

    def of(self, model: dict[str, Any]) -> float:
        return self.by_model.get(canonical(model), self.default)

    @cached_property
    def eval_default(self) -> float | None:
        """The median over this device's evaluated models (for a model it has not evaluated)."""
        return statistics.median(self.eval_by_model.values()) if self.eval_by_model else None

    def of_eval(self, model: dict[str, Any]) -> float:
        key = canonical(model)
        if key in self.eval_by_model:
            return self.eval_by_model[key]
        return self.eval_default if self.eval_default is not None else self.of(model)


def measured_passes(cfg: dict[str, Any], info: dict[str, Any]) -> float:
    """Forward-equivalents per training image a finished run took: a method that stops its
    attack early records the mean steps taken (FAT's ``bp``), which replaces the attack's K."""
    bp = (info.get("final") or {}).get("bp")
    if bp is None:
        return run_passes(cfg)
    from .methods import METHODS

    return METHODS.get(cfg["method"]["name"]).train_passes + 2.0 * float(bp)


def rates(device: str | None = None, scale: str | None = None) -> Rates:
    """The throughput on ``device`` (default: this machine's): its ``bench speed`` result, else
    the median of its finished runs (the default over ``scale``'s runs first, per model over
    every scale's), else the assumed 100 TFLOP/s (0.1 on a CPU)."""
    device = device or this_device()
    root = layout.results_root()
    found = _speed_rates(root, device) or _run_rates(root, device, scale)
    if found:
        return found
    if device.startswith("CPU "):
        return Rates(ASSUMED_CPU_FLOPS, f"assumed: no bench speed result or finished run on {device}; 0.1 TFLOP/s "
                     "effective (one job on a CPU core, as measured on this suite's development machine; "
                     "`bench speed --quick` measures it)")
    return Rates(ASSUMED_FLOPS, f"assumed: no bench speed result or finished run on {device}; 100 TFLOP/s "
                 "effective (an H100 in bf16)")


def _speed_rates(root: Path, device: str) -> Rates | None:
    """From the newest ``bench speed`` result of ``device``: its PGD-AT rows' images/s × passes × F."""
    from .methods import METHODS

    speed_dir = root / "speed"
    files = sorted(speed_dir.glob("*.json"), key=lambda p: p.stat().st_mtime) if speed_dir.exists() else []
    for path in reversed(files):
        data = json.loads(path.read_text())
        if not data["device"].startswith(device):     # a CPU's entry also names its thread count
            continue
        by_model = {}
        for row in data["rows"]:
            if row.get("method") == "pgd_at" and row.get("suite_none") and row.get("model_spec"):
                model = canonical(row["model_spec"])
                passes = METHODS.get("pgd_at").train_passes + 2.0 * row["attack_steps"]
                by_model[model] = row["suite_none"] * passes * forward_flops(model, 10, (3, 32, 32))
        if by_model:
            return Rates(max(by_model.values()), f"bench speed on {data['device']} ({path})", by_model)
    return None


def _run_rates(root: Path, device: str, scale: str | None) -> Rates | None:
    """From ``device``'s finished runs (run.json's measured images/s × passes × F): the default
    over ``scale``'s runs if it has any (else over all), per model over every scale's, and
    evaluations from those runs' finished evaluations."""
    from .data.catalog import DATASETS

    by_scale: dict[str, list[float]] = {}
    models: dict[str, list[float]] = {}
    configs: dict[str, dict[str, Any]] = {}     # scale/run id → config, of this device's finished runs
    for path in sorted(root.glob("*/runs/*/run.json")):
        try:
            info = json.loads(path.read_text())
            cfg, tp = info.get("config", {}), info.get("throughput")
            if not tp or "method" not in cfg or run_device(info) != device:
                continue
            ds = DATASETS.get(cfg["dataset"])
            model = canonical(cfg["model"])
            rate = tp["images_per_s"] * measured_passes(cfg, info) * forward_flops(model, ds.num_classes,
                                                                                  tuple(ds.shape))
        except Exception:   # a run of an older config, or one being written: skip it
            continue
        run_scale = path.parent.parent.parent.name
        by_scale.setdefault(run_scale, []).append(rate)
        models.setdefault(model, []).append(rate)
        configs[f"{run_scale}/{path.parent.name}"] = cfg
    pool = scale if scale in by_scale else None
    pooled = by_scale[pool] if pool else [r for rs in by_scale.values() for r in rs]
    if not pooled:
        return None
    where = f"{pool}-scale" if pool else "finished"
    evals = _eval_rates(root, configs)
    return Rates(statistics.median(pooled), f"the median of {len(pooled)} {where} runs on {device}, per model "
                 f"where measured ({len(models)} models; evaluations from {sum(map(len, evals.values()))} "
                 "finished ones)", {m: statistics.median(r) for m, r in models.items()},
                 {m: statistics.median(r) for m, r in evals.items()})


def _eval_rates(root: Path, configs: dict[str, dict[str, Any]]) -> dict[str, list[float]]:
    """Effective FLOP/s of the finished evaluations of ``configs``' runs, per model: the
    evaluation's counted work (as eval_flops counts it) over its measured seconds."""
    from .data.catalog import DATASETS

    out: dict[str, list[float]] = {}
    for key, cfg in configs.items():
        scale, run_id = key.split("/")
        for path in (root / scale / "evals" / run_id).glob("*.json"):
            try:
                res = json.loads(path.read_text())
                if not res.get("seconds") or not isinstance(res.get("attack"), dict):
                    continue
                ds = DATASETS.get(cfg["dataset"])
                model = canonical(cfg["model"])
                work = res["n"] * (1 + attack_passes(res["attack"])) * forward_flops(model, ds.num_classes,
                                                                                      tuple(ds.shape))
            except Exception:   # a result of another kind (a measure, a probe) or an older one: skip it
                continue
            out.setdefault(model, []).append(work / res["seconds"])
    return out


def throughput(device: str | None = None, scale: str | None = None) -> tuple[float, str]:
    """The default effective FLOP/s on ``device`` and where the figure comes from."""
    r = rates(device, scale)
    return r.default, r.source


def estimate(plan: Plan, tables: list[Table]) -> dict[str, Any]:
    """Hours per target and in total; on a scale of real data, also the hours of what can run
    with the data under the data root now (``--config partial=1``) and which data are absent."""
    from .data.locate import available

    r = rates(scale=plan.scale_name)

    @cache   # each run and evaluation costed once, however many targets share it
    def run_seconds(run_id: str) -> float:
        return run_flops(plan, run_id) / r.of(plan.run(run_id).config["model"])

    @cache
    def eval_seconds(key: str) -> float:
        return eval_flops(plan, key) / r.of_eval(plan.run(plan.evals[key].run_id).config["model"])

    def run_hours(runs) -> float:
        return sum(run_seconds(i) for i in runs) / 3600

    def eval_hours(keys) -> float:
        return sum(eval_seconds(k) for k in keys) / 3600

    real = plan.scale["data"]["source"] == "real"
    out, all_runs, all_evals = [], set(), set()
    for t in tables:
        absent = sorted(d for d in t.datasets if real and not available(d))
        keys = t.eval_keys()
        runs = _runs(plan, t, keys)
        row = {"target": t.target, "runs": len(runs), "evaluations": len(keys), "train_hours": run_hours(runs),
               "eval_hours": eval_hours(keys), "absent": absent}
        if absent:
            here = t.eval_keys(set(t.datasets) - set(absent))
            row["hours_here"] = run_hours(_runs(plan, t, here, every_cell=False)) + eval_hours(here)
        all_runs |= runs
        all_evals |= set(keys)
        out.append(row)
    return {"targets": out, "total_hours": run_hours(all_runs) + eval_hours(all_evals),
            "distinct_runs": len(all_runs), "rate": r.default, "source": r.source,
            "aa_passes": autoattack_passes({})}


def _runs(plan: Plan, table: Table, keys: list[str], every_cell: bool = True) -> set[str]:
    """The runs behind evaluations ``keys`` (and, with ``every_cell``, every run a cell names,
    e.g. a hyperparameter column's), with the runs they require (helpers, teachers)."""
    runs = {plan.evals[k].run_id for k in keys}
    if every_cell:
        runs |= {r for c in table.cells for r in c.runs}
    return runs | {req for r in list(runs) for req in _requires(plan, r)}


def _requires(plan: Plan, run_id: str) -> set[str]:
    out = set()
    for r in plan.run(run_id).requires.values():
        out |= {r} | _requires(plan, r)
    return out
