"""Evaluation of a trained run under a protocol (attack, its settings, test subset)."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import checkpoint, layout, precision, provenance
from .attacks import ATTACKS, build as build_attack
from .data.store import load_for_run
from .data.loader import DeviceLoader
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


def read_probe(scale: str, run_id: str, run_info: dict, protocol_id: str, protocol: dict, out: Path
               ) -> dict[str, Any]:
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
    result = {**PROBES.get(name).summary(records, **cfg, **budget), "records": records, "n": None,
              "implementation": f"bench.probes.{name} (source {provenance.source_hash([PROBES.source_file(name)])})",
              "run_id": run_id, "protocol_id": protocol_id, "protocol": protocol, "scale": scale,
              "probe_params": run_info["config"].get("probes", {}).get(name, {}),
              "train_dataset": run_info["dataset"], "extra_dataset": run_info.get("extra_dataset"),
              "environment": provenance.environment()}
    write_json(out, result)
    return result


def run_protocol(scale: str, run_id: str, run_cfg: dict, protocol_id: str, protocol: dict,
                 out: Path, progress: bool = True) -> dict[str, Any]:
    """Evaluate a run's checkpoint under a protocol: an ``attack`` (clean and robust
    accuracy) or a ``measure``, which may also need other runs' models (the protocol's
    resolved ``helpers``: run and checkpoint per role)."""
    with locked(out.parent, out.stem):   # one writer per output; the stale temporaries of a killed one removed
        return _run_protocol(scale, run_id, run_cfg, protocol_id, protocol, out, progress)


def _run_protocol(scale: str, run_id: str, run_cfg: dict, protocol_id: str, protocol: dict,
                  out: Path, progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    dev = precision.device()
    rdir = layout.run_dir(scale, run_id)
    run_info = read_json(rdir / "run.json")
    if "probe" in protocol:
        return read_probe(scale, run_id, run_info, protocol_id, protocol, out)
    model, ckpt = checkpoint.load(rdir / f"{protocol.get('checkpoint', 'best')}.pt", dev)
    data = load_for_run(run_cfg, n_test=protocol.get("n_test"))
    loader = DeviceLoader(data.test, protocol.get("batch_size", 500), dev)
    bar = tqdm(total=len(loader), desc=f"{run_id} {protocol_id}", file=sys.stderr,
               disable=not progress, mininterval=1 if sys.stderr.isatty() else 30)
    start = time.perf_counter()
    seed = protocol.get("seed", 0)
    kwargs = {}
    if "measure" in protocol:
        helpers = {role: checkpoint.load(layout.run_dir(scale, h["run"]) / f"{h['checkpoint']}.pt", dev)[0]
                   for role, h in protocol.get("helpers", {}).items()}
        result = run_measure(model, loader, protocol["measure"], helpers, seed=seed, progress=bar)
    else:
        if protocol["attack"]["name"] == "autoattack":
            kwargs["state_path"] = out.with_name(out.stem + ".partial.json")
        result = measure(model, loader, protocol["attack"], seed=seed, progress=bar, **kwargs)
    bar.close()
    result.update(
        run_id=run_id, protocol_id=protocol_id, protocol=protocol, scale=scale,
        checkpoint={"which": protocol.get("checkpoint", "best"), "epoch": ckpt.get("epoch")},
        dataset=data.fingerprint, train_dataset=run_info["dataset"], extra_dataset=run_info.get("extra_dataset"),
        pretrained=run_info.get("pretrained"), seconds=time.perf_counter() - start,
        environment=provenance.environment(), device=str(dev))
    write_json(out, result)
    state = kwargs.get("state_path")
    if state is not None and state.exists():
        state.unlink()
    return result
