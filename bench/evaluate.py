"""Evaluation of a trained run under a protocol (attack, its settings, test subset)."""
from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import checkpoint, layout, precision, provenance
from .attacks import ATTACKS, build as build_attack
from .data.store import load_for_run
from .data.loader import DeviceLoader, make_loader
from .errors import BenchError
from .fileio import locked, read_json, write_json


def clean_accuracy(model: torch.nn.Module, loader: DeviceLoader) -> float:
    was = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=loader.device)
    with torch.no_grad():
        for x, y in loader.batches():
            correct += (model(x).argmax(1) == y).sum()
    model.train(was)
    return 100.0 * correct.item() / loader.n


def measure(model: torch.nn.Module, loader: DeviceLoader, attack_cfg: dict | None, seed: int = 0,
            progress=None, **kwargs: Any) -> dict[str, Any]:
    """Clean accuracy, and robust accuracy under ``attack_cfg`` if given (percent)."""
    if attack_cfg is None:
        return {"n": loader.n, "clean": clean_accuracy(model, loader)}
    attack = build_attack(attack_cfg, model)
    result = attack.evaluate(loader, seed=seed, progress=progress, **kwargs)
    result.setdefault("implementation", f"bench.attacks.{attack_cfg['name']} "
                      f"(source {provenance.source_hash([ATTACKS.source_file(attack_cfg['name'])])})")
    result["attack"] = {"name": attack_cfg["name"], **attack.params()}
    return result


def run_measure(model: torch.nn.Module, loader: DeviceLoader, cfg: dict, helpers: dict[str, torch.nn.Module],
                seed: int = 0, progress=None) -> dict[str, Any]:
    from .measures import MEASURES

    params = {k: v for k, v in cfg.items() if k != "name"}
    result = MEASURES.get(cfg["name"])(model, helpers=helpers, **params).evaluate(loader, seed=seed,
                                                                                   progress=progress)
    result.setdefault("implementation", f"bench.measures.{cfg['name']} "
                      f"(source {provenance.source_hash([MEASURES.source_file(cfg['name'])])})")
    return result


def _records_result(scale: str, run_id: str, run_info: dict, protocol_id: str, protocol: dict,
                    summary: dict[str, Any], records: Any, implementation: str) -> dict[str, Any]:
    return {**summary, "records": records, "n": None, "implementation": implementation,
            "run_id": run_id, "protocol_id": protocol_id, "protocol": protocol, "scale": scale,
            "checkpoint": None, "train_dataset": run_info["dataset"], "extra_dataset": run_info.get("extra_dataset"),
            "environment": provenance.environment()}


def read_probe(scale: str, run_id: str, run_info: dict, protocol_id: str, protocol: dict) -> dict[str, Any]:
    """A probe protocol: the records the run's training job wrote (probes.json) for one
    probe, with the probe's scalar summary as the metrics a figure's columns read."""
    from .probes import PROBES

    cfg = dict(protocol["probe"])
    name = cfg.pop("name")
    path = layout.run_dir(scale, run_id) / "probes.json"
    recorded = read_json(path) if path.exists() else {}
    if name not in recorded:
        raise BenchError(f"run {run_id} recorded no probe {name!r} ({path}); its config must request it")
    records = recorded[name]
    budget = {"run_epochs": run_info["config"]["epochs"],
              "paper_epochs": run_info["config"].get("paper_epochs", run_info["config"]["epochs"])}
    result = _records_result(
        scale, run_id, run_info, protocol_id, protocol, PROBES.get(name).summary(records, **cfg, **budget), records,
        f"bench.probes.{name} (source {provenance.source_hash([PROBES.source_file(name)])})")
    result["probe_params"] = run_info["config"].get("probes", {}).get(name, {})
    return result


HISTORY_STATS = {"mean": statistics.fmean, "sum": math.fsum, "first": lambda v: v[0], "last": lambda v: v[-1],
                 "min": min, "max": max}


def history_summary(history: list[dict[str, Any]], metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Summary metrics of a run's per-epoch records (metrics.json): for each named metric,
    ``stat`` (mean, sum, first, last, min, max) of record key ``key`` over the epochs
    ``epochs: [first, last]`` (1-indexed, inclusive; default all), times ``scale`` (1; e.g.
    1/60: seconds → minutes). None where no epoch has it."""
    out: dict[str, Any] = {}
    for name, m in metrics.items():
        first, last = m.get("epochs", [1, len(history)])
        vals = [h[m["key"]] for h in history if first <= h["epoch"] <= last and m["key"] in h
                and isinstance(h[m["key"]], (int, float)) and math.isfinite(h[m["key"]])]
        out[name] = HISTORY_STATS[m.get("stat", "mean")](vals) * m.get("scale", 1) if vals else None
    return out


def read_history(scale: str, run_id: str, run_info: dict, protocol_id: str, protocol: dict) -> dict[str, Any]:
    """A history protocol: summary metrics of the run's training statistics (metrics.json:
    FAT's BP count per epoch, epoch times), with the per-epoch records for a figure."""
    history = read_json(layout.run_dir(scale, run_id) / "metrics.json")
    cfg = run_info["config"]
    ratio = cfg["epochs"] / cfg.get("paper_epochs", cfg["epochs"])   # windows are paper epochs: rescale them
    metrics = {}
    for name, m in protocol["history"].get("metrics", {}).items():
        if "epochs" in m:
            first = max(1, round(m["epochs"][0] * ratio))
            m = {**m, "epochs": [first, max(first, round(m["epochs"][1] * ratio))]}
        metrics[name] = m
    summary = history_summary(history, metrics)
    return _records_result(scale, run_id, run_info, protocol_id, protocol, summary, history,
                           "bench.evaluate.history_summary (the run's metrics.json)")


def _check_data(run_id: str, run_info: dict, data_fp: dict) -> None:
    """An evaluation reads the data its run was trained on, or none at all."""
    trained = run_info["dataset"]
    if (trained.get("sha256"), trained.get("source")) != (data_fp.get("sha256"), data_fp.get("source")):
        raise BenchError(f"run {run_id} was trained on {trained.get('dataset')} from {trained.get('source')} "
                         f"(sha256 {str(trained.get('sha256'))[:16]}), but the data root now holds "
                         f"{data_fp.get('source')} (sha256 {str(data_fp.get('sha256'))[:16]}); remove "
                         f"{layout.run_dir(run_info.get('scale', '?'), run_id)} to retrain on the current data, or "
                         f"restore the data it was trained on")


def run_protocol(scale: str, run_id: str, run_cfg: dict, protocol_id: str, protocol: dict,
                 out: Path, progress: bool = True) -> dict[str, Any]:
    """Evaluate a run's checkpoint under a protocol: an ``attack`` (clean and robust
    accuracy) or a ``measure``, which may also need other runs' models (the protocol's
    resolved ``helpers``: run and checkpoint per role); or read the run's own records
    (``probe``, ``history``). The result names the run, the protocol, the checkpoint's
    sha256 and the data it was computed on, so a table can check what it reads."""
    with locked(out.parent, out.stem):   # one writer per output; the stale temporaries of a killed one removed
        return _run_protocol(scale, run_id, run_cfg, protocol_id, protocol, out, progress)


class LogLines:
    """tqdm's file in a log (an evaluation job's .log): each refresh of the bar on a line of its
    own, at most once a minute, instead of carriage returns that overwrite it on a terminal."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        for line in text.replace("\r", "\n").split("\n"):
            if line.strip():
                self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _run_protocol(scale: str, run_id: str, run_cfg: dict, protocol_id: str, protocol: dict,
                  out: Path, progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    dev = precision.device()
    rdir = layout.run_dir(scale, run_id)
    run_info = read_json(rdir / "run.json")
    if "probe" in protocol or "history" in protocol:
        result = (read_probe if "probe" in protocol else read_history)(scale, run_id, run_info, protocol_id, protocol)
        write_json(out, result)
        return result
    which = protocol.get("checkpoint", "best")
    model, ckpt, digest = checkpoint.load_run(rdir, which, dev)
    prec = run_cfg.get("precision", {})   # evaluated in the precision it was trained in
    model = precision.for_evaluation(model, dev, prec)
    data = load_for_run(run_cfg, n_test=protocol.get("n_test"))
    _check_data(run_id, {**run_info, "scale": scale}, data.fingerprint)
    batch_size = protocol.get("batch_size", 500)
    loader = make_loader(data, "test", batch_size, dev, channels_last=bool(prec.get("channels_last", False)))
    tty = sys.stderr.isatty()
    bar = tqdm(total=len(loader), desc=f"{run_id} {protocol_id}", file=sys.stderr if tty else LogLines(sys.stderr),
               disable=not progress, mininterval=1 if tty else 60)
    start = time.perf_counter()
    seed = protocol.get("seed", 0)
    kwargs = {}
    helper_digests = {}
    if "measure" in protocol:
        helpers = {}
        for role, h in protocol.get("helpers", {}).items():
            helpers[role], _, sha = checkpoint.load_run(layout.run_dir(scale, h["run"]), h["checkpoint"], dev)
            helper_digests[role] = {**h, "sha256": sha}
        result = run_measure(model, loader, protocol["measure"], helpers, seed=seed, progress=bar)
    else:
        if protocol["attack"]["name"] == "autoattack":
            kwargs["state_path"] = out.with_name(out.stem + ".partial.json")
            kwargs["state_key"] = {"run_id": run_id, "protocol_id": protocol_id, "checkpoint_sha256": digest,
                                   "test_sha256": data.fingerprint["sha256"],
                                   "test_subset": data.fingerprint.get("test_subset"), "n": loader.n,
                                   "precision": prec}
        result = measure(model, loader, protocol["attack"], seed=seed, progress=bar, **kwargs)
    bar.close()
    result.update(
        run_id=run_id, protocol_id=protocol_id, protocol=protocol, scale=scale,
        checkpoint={"which": which, "epoch": ckpt.get("epoch"), "sha256": digest}, helpers=helper_digests,
        dataset=data.fingerprint, train_dataset=run_info["dataset"], extra_dataset=run_info.get("extra_dataset"),
        pretrained=run_info.get("pretrained"), seconds=time.perf_counter() - start,
        environment=provenance.environment(), device=str(dev), precision=prec, batch_size=batch_size)
    write_json(out, result)
    state = kwargs.get("state_path")
    if state is not None and state.exists():
        state.unlink()
    return result
