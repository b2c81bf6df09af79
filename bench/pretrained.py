"""Models evaluated without training: a RobustBench model ID or a local checkpoint file.

A spec row ``pretrained: {robustbench: <model id>, threat_model: Linf}`` (or
``{file: <path under the data root>, model: <a model of bench/models>}``, with ``names:
trades_wrn`` for a Wide ResNet saved with the TRADES code's parameter names) plans a run
whose train job imports weights instead of training them. The weights become the run's
``best.pt`` and ``last.pt``, so every evaluation protocol reads them like a trained
run's; ``run.json`` records where they came from (file, sha256, robustbench version).

The checkpoint must already be under the data root (``bench.data.locate`` names the
expected file before any job starts; ``bench data download robustbench:…`` fetches a
RobustBench one where there is internet). At a scale whose config says
``weights: random`` (the smoke scale, synthetic data) the job builds the same
architecture with seeded random weights instead, labelled as a stand-in everywhere.
"""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import BenchError, MissingDataError
from .fileio import file_digest, torch_load


def _state_dict(obj: Any) -> dict:
    """A state dict from a saved checkpoint: the dict itself, or its 'state_dict' / 'model'
    entry, without DataParallel's 'module.' prefix."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise BenchError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def trades_wrn_names(state: dict) -> dict:
    """A Wide ResNet state dict with the TRADES code's names (models/wideresnet.py, also
    MART's and FAT's: conv1, block{1,2,3}.layer.{j}.{bn1,conv1,bn2,conv2,convShortcut}, bn1,
    fc, and an unused sub_block1) under bench/models/wide_resnet.py's names (conv1,
    layers.{i}.{…, shortcut}, bn, linear); the stages' blocks are numbered in order."""
    per_stage = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"block1\.layer\.(\d+)\.", k)))
    out = {}
    for key, value in state.items():
        if key.startswith("sub_block1."):
            continue   # built but never used in the forward (TRADES' WRN)
        m = re.match(r"block(\d)\.layer\.(\d+)\.(.+)$", key)
        if m:
            i = (int(m.group(1)) - 1) * per_stage + int(m.group(2))
            key = f"layers.{i}.{m.group(3).replace('convShortcut', 'shortcut')}"
        elif key.startswith("bn1."):
            key = "bn." + key[4:]
        elif key.startswith("fc."):
            key = "linear." + key[3:]
        out[key] = value
    return out


NAMES = {"trades_wrn": trades_wrn_names}   # a file's parameter names → the suite's (pretrained: {names: …})


def weights(cfg: dict[str, Any], num_classes: int, in_channels: int):
    """The model of a pretrained run's config with its weights, and where they came from."""
    import torch

    from .data.locate import checkpoint_path, checkpoint_requirement, missing_message
    from .models import build

    src = cfg["pretrained"]
    requirement = checkpoint_requirement(src)
    if src.get("weights") == "random":
        torch.manual_seed(int(cfg["seed"]))
        model = build(cfg["model"], num_classes, in_channels)
        return model, {"weights": f"{requirement}: its architecture with random weights (a stand-in at this "
                                  f"scale; no checkpoint is loaded)", "seed": cfg["seed"]}
    path = checkpoint_path(requirement)
    if not path.is_file():
        raise MissingDataError(missing_message(requirement))
    origin = {"weights": requirement, "file": str(path), "sha256": file_digest(path)}
    if "robustbench" in src:
        from .models.robustbench import zoo

        zoo()
        import robustbench.utils

        model = robustbench.utils.load_model(src["robustbench"], model_dir=str(path.parents[2]),
                                             dataset=src["dataset"], threat_model=src["threat_model"])
        origin["robustbench"] = metadata.version("robustbench")
    else:
        model = build(cfg["model"], num_classes, in_channels)
        state = _state_dict(torch_load(path, map_location="cpu", weights_only=True))
        if "names" in src:
            state = NAMES[src["names"]](state)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise BenchError(f"{path} does not fit model {cfg['model']}: {str(e).splitlines()[0]}") from None
    return model, origin


def import_model(run_id: str, cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The train job of a pretrained run: its checkpoints and run.json, no training."""
    from . import checkpoint, provenance
    from .data.store import load_for_run
    from .fileio import write_json

    data = load_for_run(cfg, n_test=0)   # the dataset's fingerprint and shape; evaluations read its test split
    model, origin = weights(cfg, data.info.num_classes, data.info.shape[0])
    meta = dict(model_cfg=cfg["model"], num_classes=data.info.num_classes, in_channels=data.info.shape[0])
    digests = {name: checkpoint.save(run_dir / f"{name}.pt", model.eval(), epoch=None, pretrained=origin, **meta)
               for name in ("best", "last")}   # no training: the selected and the final model are the same
    summary = {"run_id": run_id, "config": cfg, "dataset": data.fingerprint, "pretrained": origin,
               "best": None, "epochs": 0, "final": None, "throughput": None, "checkpoints": digests,
               "environment": provenance.environment()}
    write_json(run_dir / "run.json", summary)
    return summary
