"""FAB: the fast adaptive boundary attack (Croce & Hein, ICML 2020), untargeted, through
pyautoattack's own class (``FABAttack_PT``, the authors' code), as HE evaluates it (Pang et
al., NeurIPS 2020, Table 2 "FAB"; AT_HE's ``CIFAR-10/FAB_attack.py`` ran advertorch's
``LinfFABAttack`` with the settings below).

Threat model ℓ∞ (or ℓ2, ℓ1), inputs in [0, 1], model in eval mode: FAB searches the
minimal perturbation; an example counts as broken iff FAB finds an adversarial within ε
(pyautoattack's criterion). AT_HE's advertorch counting took the signed max of x − x_adv
and counted FAB's failures (x returned, distance 0) as broken; that quirk is not kept.
Arguments (defaults, AT_HE's FAB_attack.py): eps ("8/255"), norm ("Linf"), n_restarts (1),
n_iter (20), alpha_max (0.1), eta (1.05), beta (0.9), seed (0; FAB reseeds torch's global
generator, which is forked here so nothing else is disturbed), bn_mode ("eval" only).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import ATTACKS
from ..errors import SpecError
from .autoattack import version
from .base import Attack, check_budget, model_mode, number


@ATTACKS.register("fab")
@dataclass(repr=False)
class FAB(Attack):
    eps: float | str = "8/255"
    norm: str = "Linf"
    n_restarts: int = 1
    n_iter: int = 20
    alpha_max: float | str = 0.1
    eta: float | str = 1.05
    beta: float | str = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.eps = number(self.eps)
        if self.bn_mode.value != "eval" or self.norm not in ("Linf", "L2", "L1") or self.n_iter < 1:
            raise SpecError("fab: bn_mode eval, norm Linf, L2 or L1, n_iter ≥ 1")
        check_budget(self.eps, None, self.norm == "Linf", (0.0, 1.0))

    def perturb(self, x, y, generator=None):
        from pyautoattack.fab_pt import FABAttack_PT

        fab = FABAttack_PT(self.model, norm=self.norm, n_restarts=self.n_restarts, n_iter=self.n_iter, eps=self.eps,
                           alpha_max=self.alpha_max, eta=self.eta, beta=self.beta, seed=self.seed, targeted=False,
                           device=x.device)
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with model_mode(self.model, False), torch.random.fork_rng(devices=devices):
            return fab.perturb(x.contiguous(), y).detach()

    def evaluate(self, loader, seed: int = 0, progress=None):
        return {**super().evaluate(loader, seed, progress), "implementation": version()}
