"""AutoAttack (Croce & Hein, ICML 2020) through the official ``pyautoattack`` package.

Threat models ℓ∞, ℓ2, ℓ1; inputs in [0, 1]; the model is evaluated in eval mode.
Arguments (defaults): eps ("8/255"), norm ("Linf"), version ("standard": APGD-CE,
APGD-T, FAB-T, Square), seed (0, fixed so runs repeat), batch_size (500).
Reduced scales only (recorded in the protocol and every report): ``attacks``, a
subset of the standard version's attacks run with the standard settings, and
``n_iter`` / ``n_queries``, fewer APGD/FAB iterations and Square queries.
This file only calls the package: AutoAttack is never re-implemented here. The
package version and per-attack robust accuracies are recorded with every result,
and the evaluation resumes from pyautoattack's own state file after an interruption.
"""
from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.loader import to_float
from ..fileio import read_json, write_json
from . import ATTACKS
from ..errors import SpecError
from .base import Attack, check_budget, model_mode, number

NORMS = ("Linf", "L2", "L1")                        # pyautoattack's threat models
VERSIONS = ("standard", "plus", "rand", "custom")

_AFTER = re.compile(r"robust accuracy after ([A-Z\-]+): ([0-9.]+)%")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def version() -> str:
    import pyautoattack

    return f"pyautoattack {pyautoattack.__version__}"


@ATTACKS.register("autoattack")
@dataclass(repr=False)
class AutoAttack(Attack):
    eps: float | str = "8/255"
    norm: str = "Linf"
    version: str = "standard"
    seed: int = 0
    batch_size: int = 500
    attacks: list[str] | None = None
    n_iter: int | None = None
    n_queries: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.eps = number(self.eps)
        if self.bn_mode.value != "eval":
            raise SpecError("AutoAttack evaluates the model in eval mode only")
        if self.norm not in NORMS or self.version not in VERSIONS:
            raise SpecError(f"AutoAttack norm must be one of {NORMS} and version one of {VERSIONS}, "
                            f"got norm={self.norm!r}, version={self.version!r}")
        check_budget(self.eps, None, self.norm == "Linf", (0.0, 1.0))

    def _adversary(self, device):
        from pyautoattack import AutoAttack as Official

        adversary = Official(self.model, norm=self.norm, eps=self.eps, version=self.version,
                             seed=self.seed, device=device)
        if self.attacks is not None:
            unknown = set(self.attacks) - set(adversary.attacks_to_run)
            if unknown:
                raise ValueError(f"attacks {sorted(unknown)} are not in AutoAttack's {self.version} version")
            adversary.attacks_to_run = list(self.attacks)
        if self.n_iter is not None:
            adversary.fab.n_iter = self.n_iter
            for apgd in (adversary.apgd, adversary.apgd_targeted):
                # APGD derives its step-size checkpoints from n_iter in its constructor
                # (autopgd_base.py, APGDAttack.__init__); set them as it would.
                apgd.n_iter = apgd.n_iter_orig = self.n_iter
                apgd.n_iter_2 = max(int(0.22 * self.n_iter), 1)
                apgd.n_iter_min = max(int(0.06 * self.n_iter), 1)
                apgd.size_decr = max(int(0.03 * self.n_iter), 1)
        if self.n_queries is not None:
            adversary.square.n_queries = self.n_queries
        return adversary

    def perturb(self, x, y, generator=None):
        with model_mode(self.model, False):
            x_adv, _ = self._adversary(x.device).run_standard_evaluation(x, y, batch_size=self.batch_size)
        return x_adv

    def evaluate(self, loader, seed: int = 0, progress=None, state_path: Path | None = None,
                 state_key: dict[str, Any] | None = None, chunk: int = 1000) -> dict[str, Any]:
        """The official evaluation over the (sub)set, as the papers' eval-aa scripts run it.

        The set is attacked in chunks of ``chunk`` examples, each one call of
        ``run_standard_evaluation``; finished chunks are kept in ``state_path`` so an
        interrupted evaluation resumes where it stopped (pyautoattack's own state
        file cannot resume once a point has been broken, as of 0.2.0). The file is tied
        to ``state_key`` (the run, protocol, checkpoint sha256 and test subset) and to this
        attack's settings: chunks recorded for anything else are discarded, never reused.
        """
        key_now = {**(state_key or {}), "attack": self.params(), "chunk": chunk, "implementation": version()}
        saved = read_json(state_path) if state_path is not None and state_path.exists() else {}
        done = saved.get("chunks", {}) if saved.get("key") == json.loads(json.dumps(key_now, default=str)) else {}
        if saved and not done:
            print(f"autoattack: discarding {state_path}: it was recorded for another checkpoint, protocol or "
                  f"test subset", file=sys.stderr)
        logger = logging.getLogger("auto-attack")
        for start in range(0, loader.n, chunk):
            key = str(start)
            if key in done:
                continue
            x = to_float(loader.x[start:start + chunk]).contiguous()  # pyautoattack views gradients
            y = loader.y[start:start + chunk]
            handler, level = _Collect(), logger.level
            logger.addHandler(handler)
            logger.setLevel(logging.DEBUG)
            try:
                with model_mode(self.model, False), torch.no_grad():
                    _, y_adv = self._adversary(loader.device).run_standard_evaluation(
                        x, y, batch_size=self.batch_size)
                    clean = (self.model(x).argmax(1) == y).sum().item()
            finally:
                logger.removeHandler(handler)
                logger.setLevel(level)
            after = {m.group(1).lower(): float(m.group(2)) * len(y) / 100
                     for m in map(_AFTER.search, handler.messages) if m}
            done[key] = {"n": len(y), "clean": clean, "robust": (y_adv == y).sum().item(),
                         "after": after,
                         "warnings": [m for m in handler.messages if "warning" in m.lower()]}
            if state_path is not None:
                write_json(state_path, {"key": key_now, "chunks": done})
            if progress is not None:
                progress.update(-(-len(y) // loader.batch_size))
        n = sum(c["n"] for c in done.values())
        after_all: dict[str, float] = {}
        for c in done.values():
            for k, v in c["after"].items():
                after_all[k] = after_all.get(k, 0.0) + v
        return {"n": n, "clean": 100.0 * sum(c["clean"] for c in done.values()) / n,
                "robust": 100.0 * sum(c["robust"] for c in done.values()) / n,
                "robust_after_each_attack": {k: 100.0 * v / n for k, v in after_all.items()},
                "autoattack_warnings": sorted({w for c in done.values() for w in c["warnings"]}),
                "chunk": chunk, "implementation": version()}
