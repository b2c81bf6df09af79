"""Architectures of the RobustBench model zoo (Croce et al., 2021), by model ID.

A model that a paper cites from RobustBench (HAT Table 4: the best ResNet-18,
``Sehwag2021Proxy_R18``) is evaluated here without training: ``bench/pretrained.py``
loads its weights and saves them as the run's checkpoint, and this family rebuilds the
zoo's own network for them, so the checkpoint loads like any other.

Arguments: ``id`` (the RobustBench model name), ``dataset`` (cifar10 | cifar100 |
imagenet), ``threat_model`` (Linf | L2 | corruptions), ``num_classes`` and
``in_channels`` (checked against the zoo's dataset). Input range [0, 1]: the zoo models
normalise inside, where they need it.

robustbench 1.1.1 imports a module named ``autoattack`` (the official AutoAttack under
its old name, now published as ``pyautoattack``) and ``pkg_resources`` (setuptools < 81);
:func:`zoo` installs the alias before importing it.
"""
from __future__ import annotations

import sys
import warnings

from ..errors import SpecError
from . import MODELS

CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}


def zoo():
    """The ``robustbench`` package, importable with ``pyautoattack`` standing in for ``autoattack``."""
    try:
        import pyautoattack
        import pyautoattack.state

        sys.modules.setdefault("autoattack", pyautoattack)
        sys.modules.setdefault("autoattack.state", pyautoattack.state)
        with warnings.catch_warnings():   # its imports warn about pkg_resources and torch.jit deprecations
            warnings.simplefilter("ignore", (UserWarning, FutureWarning, DeprecationWarning))
            import robustbench
            import robustbench.utils
    except ImportError as e:
        raise SpecError(f"RobustBench models need the robustbench package ({e}); "
                        f"pip install 'robustbench==1.1.1' 'setuptools<81'") from None
    return robustbench


def entry(id: str, dataset: str, threat_model: str) -> dict:
    """The zoo's record for a model ID (its constructor and download id), or a clear error."""
    zoo()
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    from robustbench.model_zoo.models import model_dicts

    try:
        models = model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)]
    except (ValueError, KeyError):
        raise SpecError(f"RobustBench has no {dataset}/{threat_model} models") from None
    if id not in models:
        close = sorted(m for m in models if m.split("_")[0][:6] == id[:6])
        raise SpecError(f"unknown RobustBench model {id!r} for {dataset}/{threat_model}"
                        + (f"; similar: {', '.join(close)}" if close else ""))
    return models[id]


@MODELS.register("robustbench")
def robustbench_model(num_classes: int, in_channels: int = 3, *, id: str, dataset: str = "cifar10",
                      threat_model: str = "Linf"):
    if CLASSES.get(dataset) != num_classes or in_channels != 3:
        raise SpecError(f"RobustBench model {id} ({dataset}) takes 3-channel images of {CLASSES.get(dataset)} "
                        f"classes, not {in_channels}-channel images of {num_classes} classes")
    return entry(id, dataset, threat_model)["model"]()
