"""The training loop shared by every method.

Per epoch: the epoch's scheduled method and attack parameters (``epoch_schedules``,
bench/schedules.py) handed to the method, batches from the device loader, and for each
batch the method's ``train_step``, which computes its objective under optional bf16
autocast and calls the loop's :class:`Updater` for each optimiser step it takes (one by
default; a method that owns its update, such as FreeAT's replays or DRA's clean and
adversarial steps, takes several and says how many). The updater runs zero_grad,
backward, the probes' hooks, the optimiser step and the per-step lr-schedule step.
Statistics accumulate on the device and are read once at the end of the epoch. Then, on
the selection epochs, the checkpoint criterion (clean or PGD robust accuracy on the test
subset), and atomic writes of last.pt, best.pt (when the criterion improves, ties to the
later epoch as in HAT's code), metrics.json and state.pt (everything needed to resume).
An interrupted run resumes from state.pt and reaches the same weights: every random draw
comes from generators seeded by (seed, epoch), scheduled values are a function of the
epoch, and a method's own state (FreeAT's perturbation) is saved with the rest. The
identity holds on the same device kind, thread count and deterministic-algorithms
setting: they are recorded (state.pt, run.json) and a resume with others is refused.

Every checkpoint's sha256 goes into run.json (``checkpoints``); evaluations load them only
if they still match. A run with extra training data (``data.extra``, robust
self-training) draws its batches from a :class:`~bench.data.loader.MixedLoader`; a run of
a model evaluated without training (``pretrained``) imports its weights instead
(bench/pretrained.py).

Probes (``cfg["probes"]``, bench/probes) are training-time analyses: the updater calls
each probe after the loss (with the method's named objective terms), after ``backward``
and at the end of every epoch; with none requested it does exactly the plain step. Their
records are kept in state.pt (so a resumed run has them all) and written to probes.json
beside metrics.json.
"""
from __future__ import annotations

import functools
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import torch

from . import checkpoint, precision, provenance, schedules
from .data.store import load_extra, load_for_run
from .data.loader import MixedLoader, epoch_generator, make_loader
from .errors import BenchError
from .evaluate import measure
from .fileio import locked, torch_load, torch_save, write_json
from .methods import METHODS
from .models import build as build_model
from .methods.base import total
from .optim import build_optimizer, build_schedule
from .probes.base import Step


class Updater:
    """One optimiser step on a loss or on a method's named terms (summed in order):
    zero_grad, backward, step and the lr schedule's step, with the probes' hooks around
    them. Methods call it once per optimiser step; it counts the steps of the epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler, probes: dict[str, Any],
                 autocast: Callable[[], Any], steps_per_epoch: int):
        self.optimizer, self.scheduler, self.probes = optimizer, scheduler, list(probes.values())
        self.autocast, self.steps_per_epoch = autocast, steps_per_epoch
        self.epoch = self.index = 0

    def begin_epoch(self, epoch: int) -> None:
        self.epoch, self.index = epoch, 0

    def __call__(self, terms: dict[str, torch.Tensor] | torch.Tensor, x: torch.Tensor, y: torch.Tensor
                 ) -> torch.Tensor:
        terms = terms if isinstance(terms, dict) else {"loss": terms}
        loss = total(terms)
        step = Step(self.epoch, self.index, self.steps_per_epoch)
        if self.probes:
            with self.autocast():
                for probe in self.probes:
                    probe.after_loss(step, x, y, terms, loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for probe in self.probes:
            probe.after_backward(step, loss)
        self.optimizer.step()
        self.scheduler.step()
        self.index += 1
        return loss


def runtime(dev: torch.device) -> dict[str, Any]:
    """What besides the config changes the weights a run reaches: device kind, CPU
    threads, deterministic algorithms."""
    return {"device": dev.type, "threads": torch.get_num_threads(),
            "deterministic": torch.are_deterministic_algorithms_enabled()}


def selection_epochs(sel: dict[str, Any], epochs: int) -> set[int]:
    """1-indexed epochs after which the checkpoint criterion is measured
    (metric "last": only the last epoch, i.e. no early stopping)."""
    if sel.get("metric") == "last":
        return {epochs}
    every, last = sel.get("every", 1), sel.get("last", 0)
    return {e for e in range(1, epochs + 1) if e % every == 0 or e > epochs - last or e == epochs}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_probes(requested: dict[str, dict[str, Any]], model: torch.nn.Module) -> dict[str, Any]:
    """The run's probes by name (``{name: params}``), in name order."""
    from .probes import PROBES

    return {name: PROBES.get(name)(model, **(params or {})) for name, params in sorted(requested.items())}


def _load_from(run_id: str, role: str, ref: str, run_dir: Path | None, dev: torch.device) -> torch.nn.Module:
    """The selected checkpoint of another run (a helper model, or the run to fine-tune from)."""
    if run_dir is None or not (run_dir / "run.json").exists():
        raise BenchError(f"run {run_id}: {role} (run {ref}) has not finished; train that run first")
    return checkpoint.load_run(run_dir, "best", dev)[0]


def _resume_check(run_id: str, state: dict[str, Any], now: dict[str, Any], path: Path) -> None:
    """A resumed run continues on the same data and runtime, or not at all."""
    if state["run_id"] != run_id:
        raise BenchError(f"{path} belongs to run {state['run_id']}, not {run_id}; remove it")
    for key, label in (("dataset_sha256", "data"), ("runtime", "runtime")):
        if state.get(key) != now[key]:
            raise BenchError(f"{path}: run {run_id} was started with {label} {state.get(key)} and would resume "
                             f"with {now[key]}, which does not reach the same weights; resume with the same "
                             f"settings (--config threads=…, the same device and data), or remove {path.parent} "
                             f"to start over")


def _write_state(path: Path, state: dict[str, Any], digests: dict[str, Any]) -> None:
    """state.pt, the last file of an epoch (the writer's thread: the checkpoints before it are written)."""
    torch_save(path, {**state, "checkpoints": checkpoint.resolved(digests)})


def train(run_id: str, cfg: dict[str, Any], run_dir: Path, helper_dirs: dict[str, Path] | None = None,
          progress: bool = True) -> dict[str, Any]:
    with locked(run_dir):   # one writer per run folder; the stale temporaries of a killed one removed
        return _train(run_id, cfg, run_dir, helper_dirs, progress)


def _train(run_id: str, cfg: dict[str, Any], run_dir: Path, helper_dirs: dict[str, Path] | None,
           progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    if "pretrained" in cfg:   # evaluated without training: import the weights (bench/pretrained.py)
        from .pretrained import import_model

        return import_model(run_id, cfg, run_dir)
    dev = precision.device()
    prec = cfg.get("precision", {})
    amp, channels_last = prec.get("amp", "none"), bool(prec.get("channels_last", False))
    seed = int(cfg["seed"])
    helper_dirs = helper_dirs or {}

    data = load_for_run(cfg, n_test=cfg["selection"].get("n_test"), test_subset=cfg["selection"].get("subset", "random"))
    info = data.info
    augment = cfg.get("augment", info.augment)
    extra = load_extra(cfg)   # robust self-training: pseudo-labelled images in every batch
    if extra is None:
        train_loader = make_loader(data, "train", cfg["batch_size"], dev, shuffle=True, augment=augment,
                                   channels_last=channels_last)
    else:
        train_loader = MixedLoader(data.train, extra.train, cfg["batch_size"], dev,
                                   fraction=cfg["data"]["extra"]["fraction"], augment=augment,
                                   channels_last=channels_last)
    test_loader = make_loader(data, "test", cfg["selection"].get("batch_size", 500), dev,
                              channels_last=channels_last)

    torch.manual_seed(seed)
    model = precision.prepare(build_model(cfg["model"], info.num_classes, info.shape[0]), dev, channels_last)
    # the compiled forward (every attack step and training step goes through it) shares the
    # eager model's parameters; checkpoints, the optimiser and probes use the eager model
    fmodel = precision.compiled(model, prec.get("compile", "none"), dev)
    method_cfg = dict(cfg["method"])
    cls = METHODS.get(method_cfg.pop("name"))
    helpers = {key: _load_from(run_id, f"helper model {key!r}", method_cfg[key], helper_dirs.get(key), dev)
               for key in cls.helpers_required}
    for key in cls.helpers_required:
        method_cfg.pop(key)
    method = cls(fmodel, cfg.get("attack"), helpers=helpers, **method_cfg)
    method.autocast = functools.partial(precision.autocast, dev, amp)
    sel_model = fmodel if amp == "none" else precision.Autocast(fmodel, dev, amp)   # selection in the run's precision
    if "init" in cfg:  # fine-tuning: start from another run's selected checkpoint
        start = _load_from(run_id, "the run to start from", cfg["init"], helper_dirs.get("init"), dev)
        model.load_state_dict(start.state_dict())
    optimizer = build_optimizer(model.parameters(), cfg["optimizer"])
    epochs = int(cfg["epochs"])
    steps_per_epoch = len(train_loader) * method.updates_per_batch
    scheduler = build_schedule(optimizer, cfg["schedule"], epochs, steps_per_epoch)
    sel = cfg["selection"]
    sel_epochs = selection_epochs(sel, epochs)

    probes = build_probes(cfg.get("probes") or {}, model)
    updater = Updater(optimizer, scheduler, probes, method.autocast, steps_per_epoch)
    resolved = {**cfg, "method": method.resolved(), "device": str(dev)}
    identity = {"dataset_sha256": data.fingerprint["sha256"], "runtime": runtime(dev)}
    state_path = run_dir / "state.pt"
    history: list[dict[str, Any]] = []
    best, best_ckpt = {"epoch": None, "value": -math.inf}, None
    start_epoch = 0
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in probes}
    digests: dict[str, str] = {}
    if state_path.exists():
        state = torch_load(state_path, map_location=dev, weights_only=True)
        _resume_check(run_id, state, identity, state_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        method.load_state_dict(state.get("method", {}))
        history, best, start_epoch = state["history"], state["best"], state["epoch"]
        best_ckpt = state["best_checkpoint"]   # rewrites best.pt if it is gone (the workflow deletes it)
        records.update(state.get("probes", {}))
        digests = dict(state.get("checkpoints", {}))
        log(f"[{run_id}] resuming after epoch {start_epoch}/{epochs}")
    else:
        write_json(run_dir / "config.json", resolved)
    log(f"[{run_id}] resolved config:\n{json.dumps(resolved, indent=2, default=str)}")
    log(f"[{run_id}] dataset: {json.dumps(data.fingerprint)}")
    log(f"[{run_id}] runtime: {json.dumps(identity['runtime'])}")
    if extra is not None:
        log(f"[{run_id}] extra training data: {json.dumps(extra.fingerprint)}")

    # a progress bar on a terminal; in a log (a Snakemake job's train.log) one line per epoch
    bar = tqdm(total=epochs * len(train_loader), initial=start_epoch * len(train_loader), desc=run_id,
               file=sys.stderr, disable=not progress or not sys.stderr.isatty(), mininterval=1)
    meta = dict(model_cfg=cfg["model"], num_classes=info.num_classes, in_channels=info.shape[0])
    with checkpoint.BackgroundWriter() as writer:   # checkpoint writes off the critical path, in order
        for epoch in range(start_epoch, epochs):
            model.train()
            scheduled = schedules.values(cfg.get("epoch_schedules"), epoch)
            method.begin_epoch(epoch, scheduled)
            updater.begin_epoch(epoch)
            g = epoch_generator(dev, seed, epoch, stream=2)
            sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=dev))
            precision.sync(dev)
            t0 = time.perf_counter()
            for x, y in train_loader.batches(seed, epoch):
                stats = method.train_step(x, y, g, updater)
                for k, v in stats.items():
                    sums[k] += v.float() * len(y)
                bar.update(1)
            precision.sync(dev)
            seconds = time.perf_counter() - t0
            for name, probe in probes.items():
                records[name] += probe.end_epoch(epoch)
            record: dict[str, Any] = {k: v.item() / train_loader.n for k, v in sums.items()}
            if not math.isfinite(record.get("loss", 0.0)):
                raise BenchError(f"[{run_id}] training diverged at epoch {epoch + 1} (loss {record['loss']})")
            record.update(scheduled)
            record.update(epoch=epoch + 1, lr=optimizer.param_groups[0]["lr"], seconds=seconds,
                          images_per_s=train_loader.n / seconds)
            if epoch + 1 in sel_epochs:
                attack = sel.get("attack") if sel["metric"] == "robust" else None
                res = measure(sel_model, test_loader, attack, seed=seed)
                record["select_clean"] = res["clean"]
                if "robust" in res:
                    record["select_robust"] = res["robust"]
                value = res["clean" if sel["metric"] == "last" else sel["metric"]]
                if value >= best["value"]:
                    best = {"epoch": epoch + 1, "value": value}
                    best_ckpt = checkpoint.pack(model, epoch=epoch + 1, metric=value, **meta)
                    digests["best"] = writer.submit(checkpoint.write, run_dir / "best.pt", best_ckpt)
            history.append(record)
            # the epoch's files, written in order by the background writer from snapshots taken now
            digests["last"] = writer.submit(checkpoint.write, run_dir / "last.pt",
                                            checkpoint.pack(model, epoch=epoch + 1, **meta))
            if epoch + 1 in cfg.get("snapshots", ()):
                digests[f"epoch{epoch + 1}"] = writer.submit(checkpoint.write, run_dir / f"epoch{epoch + 1}.pt",
                                                             checkpoint.pack(model, epoch=epoch + 1, **meta))
            writer.submit(write_json, run_dir / "metrics.json", list(history))
            if probes:
                writer.submit(write_json, run_dir / "probes.json", {k: list(v) for k, v in records.items()})
            state = checkpoint.cpu_copy({"run_id": run_id, "epoch": epoch + 1, "model": model.state_dict(),
                                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                         "method": method.state_dict(), "history": list(history), "best": best,
                                         "probes": {k: list(v) for k, v in records.items()},
                                         "best_checkpoint": best_ckpt, **identity})
            writer.submit(_write_state, state_path, state, dict(digests))
            bar.set_postfix_str(" ".join(f"{k}={v:.3g}" for k, v in record.items()
                                         if k != "epoch" and isinstance(v, (int, float))))
            log(f"[{run_id}] epoch {epoch + 1}/{epochs} " + json.dumps(record))
    digests = checkpoint.resolved(digests)
    bar.close()
    if best_ckpt is not None and not (run_dir / "best.pt").exists():   # deleted after the run: from state.pt
        digests["best"] = checkpoint.write(run_dir / "best.pt", best_ckpt)
    if not (run_dir / "last.pt").exists():
        digests["last"] = checkpoint.save(run_dir / "last.pt", model, epoch=epochs, **meta)

    speeds = [h["images_per_s"] for h in history[1:]] or [h["images_per_s"] for h in history]
    summary = {
        "run_id": run_id, "config": resolved, "dataset": data.fingerprint,
        "extra_dataset": extra.fingerprint if extra is not None else None,
        "best": best, "epochs": epochs, "final": history[-1] if history else None,
        "checkpoints": digests, "runtime": identity["runtime"],
        "train_seconds": math.fsum(h["seconds"] for h in history),   # the epochs' measured time (resumes included)
        "throughput": {"images_per_s": statistics.fmean(speeds),
                       "images_per_s_std": statistics.pstdev(speeds) if len(speeds) > 1 else 0.0,
                       "epochs_measured": len(speeds), "note": "training images per second; "
                       "first epoch excluded as warm-up when there are several"},
        "environment": provenance.environment(),
    }
    write_json(run_dir / "run.json", summary)
    return summary
