"""The training loop shared by every method.

Per epoch: batches from the device loader, the method's loss under optional bf16
autocast, an optimiser step and a per-batch schedule step, statistics accumulated
on the device and read once at the end of the epoch. Then, on the selection epochs,
the checkpoint criterion (clean or PGD robust accuracy on the test subset), and
atomic writes of last.pt, best.pt (when the criterion improves, ties to the later
epoch as in HAT's code), metrics.json and state.pt (everything needed to resume).
An interrupted run resumes from state.pt and reaches the same weights: every random
draw comes from generators seeded by (seed, epoch).

A run with extra training data (``data.extra``, robust self-training) draws its batches
from a :class:`~bench.data.loader.MixedLoader`; a run of a model evaluated without
training (``pretrained``) imports its weights instead (bench/pretrained.py).

Probes (``cfg["probes"]``, bench/probes) are training-time analyses: with none
requested the loop is exactly the plain one; with some, the loop asks the method for
its objective's terms (``Method.objective``, summed into the same loss) and calls each
probe after the loss, after ``backward`` and at the end of every epoch. Their records are
kept in state.pt (so a resumed run has them all) and written to probes.json beside
metrics.json.
"""
from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from . import checkpoint, precision, provenance
from .data.store import load_extra, load_for_run
from .data.loader import DeviceLoader, MixedLoader, epoch_generator
from .errors import BenchError
from .evaluate import measure
from .fileio import locked, torch_load, torch_save, write_json
from .methods import METHODS
from .models import build as build_model
from .methods.base import total
from .optim import build_optimizer, build_schedule
from .probes.base import Step


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

    data = load_for_run(cfg, n_test=cfg["selection"].get("n_test"), test_subset=cfg["selection"].get("subset", "random"))
    info = data.info
    extra = load_extra(cfg)   # robust self-training: pseudo-labelled images in every batch
    if extra is None:
        train_loader = DeviceLoader(data.train, cfg["batch_size"], dev, shuffle=True, augment=info.augment,
                                    channels_last=channels_last)
    else:
        train_loader = MixedLoader(data.train, extra.train, cfg["batch_size"], dev,
                                   fraction=cfg["data"]["extra"]["fraction"], augment=info.augment,
                                   channels_last=channels_last)
    test_loader = DeviceLoader(data.test, cfg["selection"].get("batch_size", 500), dev,
                               channels_last=channels_last)

    torch.manual_seed(seed)
    model = precision.prepare(build_model(cfg["model"], info.num_classes, info.shape[0]), dev, channels_last)
    method_cfg = dict(cfg["method"])
    cls = METHODS.get(method_cfg.pop("name"))
    helpers = {}
    for key in cls.helpers_required:
        helper_id = method_cfg.pop(key)
        hdir = (helper_dirs or {}).get(key)
        if hdir is None or not (hdir / "best.pt").exists():
            raise BenchError(f"run {run_id}: helper model {key!r} (run {helper_id}) has no best.pt; "
                             f"train that run first")
        helpers[key], _ = checkpoint.load(hdir / "best.pt", dev)
    method = cls(model, cfg.get("attack"), helpers=helpers, **method_cfg)
    if "init" in cfg:  # fine-tuning: start from another run's selected checkpoint
        init_dir = (helper_dirs or {}).get("init")
        if init_dir is None or not (init_dir / "best.pt").exists():
            raise BenchError(f"run {run_id}: the run to start from ({cfg['init']}) has no best.pt; train it first")
        model.load_state_dict(checkpoint.load(init_dir / "best.pt", dev)[0].state_dict())
    optimizer = build_optimizer(model.parameters(), cfg["optimizer"])
    epochs = int(cfg["epochs"])
    scheduler = build_schedule(optimizer, cfg["schedule"], epochs, len(train_loader))
    sel = cfg["selection"]
    sel_epochs = selection_epochs(sel, epochs)

    probes = build_probes(cfg.get("probes") or {}, model)
    resolved = {**cfg, "method": method.resolved(), "device": str(dev)}
    state_path = run_dir / "state.pt"
    history: list[dict[str, Any]] = []
    best, best_ckpt = {"epoch": None, "value": -math.inf}, None
    start_epoch = 0
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in probes}
    if state_path.exists():
        state = torch_load(state_path, map_location=dev, weights_only=False)
        if state["run_id"] != run_id:
            raise BenchError(f"{state_path} belongs to run {state['run_id']}, not {run_id}; remove it")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"]
        best_ckpt = state["best_checkpoint"]   # rewrites best.pt if it is gone (the workflow deletes it)
        records.update(state.get("probes", {}))
        log(f"[{run_id}] resuming after epoch {start_epoch}/{epochs}")
    else:
        write_json(run_dir / "config.json", resolved)
    log(f"[{run_id}] resolved config:\n{json.dumps(resolved, indent=2, default=str)}")
    log(f"[{run_id}] dataset: {json.dumps(data.fingerprint)}")
    if extra is not None:
        log(f"[{run_id}] extra training data: {json.dumps(extra.fingerprint)}")

    bar = tqdm(total=epochs * len(train_loader), initial=start_epoch * len(train_loader), desc=run_id,
               file=sys.stderr, disable=not progress, mininterval=1 if sys.stderr.isatty() else 30)
    meta = dict(model_cfg=cfg["model"], num_classes=info.num_classes, in_channels=info.shape[0])
    for epoch in range(start_epoch, epochs):
        model.train()
        g = epoch_generator(dev, seed, epoch, stream=2)
        sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=dev))
        precision.sync(dev)
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(train_loader.batches(seed, epoch)):
            if not probes:
                with precision.autocast(dev, amp):
                    loss, stats = method.loss(x, y, g)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            else:
                step = Step(epoch, i, len(train_loader))
                with precision.autocast(dev, amp):
                    terms, stats = method.objective(x, y, g)
                    loss = total(terms)
                    for probe in probes.values():
                        probe.after_loss(step, x, y, terms, loss)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for probe in probes.values():
                    probe.after_backward(step, loss)
            optimizer.step()
            scheduler.step()
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
        record.update(epoch=epoch + 1, lr=optimizer.param_groups[0]["lr"], seconds=seconds,
                      images_per_s=train_loader.n / seconds)
        if epoch + 1 in sel_epochs:
            attack = sel.get("attack") if sel["metric"] == "robust" else None
            res = measure(model, test_loader, attack, seed=seed)
            record["select_clean"] = res["clean"]
            if "robust" in res:
                record["select_robust"] = res["robust"]
            value = res["clean" if sel["metric"] == "last" else sel["metric"]]
            if value >= best["value"]:
                best = {"epoch": epoch + 1, "value": value}
                best_ckpt = checkpoint.save(run_dir / "best.pt", model, epoch=epoch + 1, metric=value, **meta)
        history.append(record)
        checkpoint.save(run_dir / "last.pt", model, epoch=epoch + 1, **meta)
        if epoch + 1 in cfg.get("snapshots", ()):
            checkpoint.save(run_dir / f"epoch{epoch + 1}.pt", model, epoch=epoch + 1, **meta)
        write_json(run_dir / "metrics.json", history)
        if probes:
            write_json(run_dir / "probes.json", records)
        torch_save(state_path, {"run_id": run_id, "epoch": epoch + 1, "model": model.state_dict(),
                                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                "history": history, "best": best, "probes": records, "best_checkpoint": best_ckpt})
        bar.set_postfix_str(" ".join(f"{k}={v:.3g}" for k, v in record.items() if k != "epoch"))
        log(f"[{run_id}] epoch {epoch + 1}/{epochs} " + json.dumps(record))
    bar.close()
    if best_ckpt is not None and not (run_dir / "best.pt").exists():   # deleted after the run: from state.pt
        torch_save(run_dir / "best.pt", best_ckpt)
    if not (run_dir / "last.pt").exists():
        checkpoint.save(run_dir / "last.pt", model, epoch=epochs, **meta)

    speeds = [h["images_per_s"] for h in history[1:]] or [h["images_per_s"] for h in history]
    summary = {
        "run_id": run_id, "config": resolved, "dataset": data.fingerprint,
        "extra_dataset": extra.fingerprint if extra is not None else None,
        "best": best, "epochs": epochs, "final": history[-1] if history else None,
        "throughput": {"images_per_s": statistics.fmean(speeds),
                       "images_per_s_std": statistics.pstdev(speeds) if len(speeds) > 1 else 0.0,
                       "epochs_measured": len(speeds), "note": "training images per second; "
                       "first epoch excluded as warm-up when there are several"},
        "environment": provenance.environment(),
    }
    write_json(run_dir / "run.json", summary)
    return summary
