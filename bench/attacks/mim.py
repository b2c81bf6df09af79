"""MIM: the momentum iterative method (Dong et al., "Boosting Adversarial Attacks with
Momentum", CVPR 2018), as HE (Pang et al., NeurIPS 2020, App. B.2, Eqs. 19–20) evaluates it.

Threat model ℓ∞, inputs in [0, 1]: g₀ = 0; g_{t+1} = μ·g_t + ∇ₓL(x_t)/‖∇ₓL(x_t)‖₁ (per
example); x_{t+1} = clip_{x,ε}(x_t + step_size·sign(g_{t+1})), clamped to [0, 1]; no random
start ("step size η and the number of iterations identical to those in BIM").
Arguments (defaults): eps ("8/255"), step_size ("2/255"), steps (10), decay μ (1.0),
loss ("ce" | "kl" | "cw"), kappa (0), logit_scale (1), margin (0), bn_mode ("eval"), as
in pgd (bench/attacks/pgd.py, whose projection and losses it shares).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import ATTACKS
from .pgd import PGD, Norm, Start
from ..errors import SpecError


@ATTACKS.register("mim")
@dataclass(repr=False)
class MIM(PGD):
    random_start: Start = Start.NONE
    decay: float | str = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.norm is not Norm.LINF or self.restarts != 1 or self.random_start is not Start.NONE:
            raise SpecError("mim: ℓ∞ only, one run from x itself (no restarts, random_start none)")

    def run_once(self, x, y, p_clean, g):
        x_adv, momentum = x.clone(), torch.zeros_like(x)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = self.objective(self.forward(x_adv), y, p_clean).sum()
            grad, = torch.autograd.grad(loss, x_adv)
            l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
            momentum = self.decay * momentum + grad / l1
            x_adv = self.project(x_adv.detach() + self.step_size * momentum.sign(), x)
        return x_adv.detach()
