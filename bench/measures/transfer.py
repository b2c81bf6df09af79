"""Transfer-based black-box attacks from a substitute model (HE: Pang et al., NeurIPS 2020,
App. C.4 and Fig. 4: "we apply PGD-AT, ALP, and TRADES to train the substitute models ...
we employ the untargeted PGD-20 and MIM-20 attacks").

What it measures: x′ is crafted with ``attack`` on the substitute (helper ``source``, its
selected checkpoint, in eval mode unless the attack says otherwise) and fed to the
evaluated model: ``robust`` is the evaluated model's accuracy on x′ (an example counts iff
the evaluated model classifies both x and x′ correctly), ``clean`` its clean accuracy,
``source_robust`` the substitute's own (white-box) accuracy on x′. The attack's random draws
come from the same generator stream as an attack protocol's, so when the substitute is the
evaluated run itself (Fig. 4's white-box cells) ``robust`` equals that attack's evaluation.
Arguments (defaults): attack (PGD-20, ε 0.031, step 0.003, uniform start, CE: Table 2's).
Helper models: ``source``. Input range [0, 1]. Result: n, clean, robust, source_robust, attack.
"""
from __future__ import annotations

from typing import Any

import torch

from ..attacks import build as build_attack
from ..attacks.base import model_mode
from . import MEASURES
from .base import Measure

DEFAULT_ATTACK: dict[str, Any] = {"name": "pgd", "eps": 0.031, "step_size": 0.003, "steps": 20,
                                  "random_start": "uniform", "loss": "ce"}


@MEASURES.register("transfer")
class Transfer(Measure):
    name = "transfer"
    defaults = {"attack": None}
    helpers_required = ("source",)

    def evaluate(self, loader, seed: int = 0, progress=None) -> dict[str, Any]:
        from ..data.loader import epoch_generator

        source = self.helpers["source"].eval()
        cfg = dict(self.attack or DEFAULT_ATTACK)
        attack = build_attack(cfg, source)
        g = epoch_generator(loader.device, seed, 0, stream=1)
        counts = torch.zeros(3, dtype=torch.long, device=loader.device)
        for x, y in loader.batches():
            with model_mode(self.model, False), torch.no_grad():
                ok = self.model(x).argmax(1) == y
            x_adv = attack(x, y, g)
            with torch.no_grad():
                counts += torch.stack([ok.sum(), (ok & (self.model(x_adv).argmax(1) == y)).sum(),
                                       (source(x_adv).argmax(1) == y).sum()])
            if progress is not None:
                progress.update(1)
        clean, robust, src = (100.0 * counts.double() / loader.n).tolist()
        return {"n": loader.n, "clean": clean, "robust": robust, "source_robust": src,
                "attack": {"name": cfg["name"], **attack.params()}}
