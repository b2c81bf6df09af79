"""ZOO: zeroth-order optimisation black-box attack (Chen et al., AISec 2017), as HE evaluates
it (Pang et al., NeurIPS 2020, Sec. 4.2, App. B.2 Eq. 22, Table 8 "ZOO"): "we randomly select
one sampled coordinate to perform one update with ĝ_i, and adopt the C&W optimization
mechanism based on the estimated gradient. We set σ as 10⁻⁴ and max queries as 20,000."

Threat model: score-based black box (only the model's outputs are queried), inputs in
[0, 1], model in eval mode. ZOO minimises C&W's ℓ2 objective ‖δ‖₂² + c·max(Z_y − max_{i≠y}
Z_i + κ, 0) over δ by coordinate descent: each iteration queries x + δ and x + δ ± σe_i for
one random coordinate i per example (3 queries), estimates ĝ_i = (L(δ + σe_i) − L(δ − σe_i))/2σ
(Eq. 22), and takes a coordinate-wise Adam step (β 0.9 / 0.999, bias-corrected as in the
reference's ``coordinate_ADAM``), projected so that x + δ stays in [0, 1]. The best (smallest
‖δ‖₂) misclassified query point is kept; ``binary_search_steps`` > 1 adjusts c as C&W does.
ZOO is an ℓ2 attack and HE states no ε for it: an example counts as broken iff ZOO's
adversarial has ‖δ‖∞ ≤ ε (the ε of the other columns).
Reference: huanzhang12/ZOO-Attack ``l2_attack_black.py`` (learning rate 1e-2, c 0.25, one
binary-search step). adversarial-robustness-toolbox's ``ZooAttack`` is not used: it clips the
perturbation itself to [0, 1] (no negative changes) and supports one image per batch; its Adam
step is the test oracle of this one.
Arguments (defaults): eps ("8/255"), queries (20000: ⌊20000/3⌋ iterations), sigma (1e-4),
learning_rate (0.01), initial_const (0.25), binary_search_steps (1), confidence (0),
bn_mode ("eval" only). Coordinates come from the evaluation's generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import ATTACKS
from ..errors import SpecError
from .base import Attack, check_budget, model_mode, number
from .pgd import cw_margin

BETA1, BETA2 = 0.9, 0.999


def adam_coordinate(delta, m, v, t, rows, idx, grad, lr, down, up):
    """The reference's coordinate_ADAM on one coordinate per row (in place)."""
    m[rows, idx] = BETA1 * m[rows, idx] + (1 - BETA1) * grad
    v[rows, idx] = BETA2 * v[rows, idx] + (1 - BETA2) * grad * grad
    epoch = t[rows, idx]
    corr = torch.sqrt(1 - BETA2 ** epoch) / (1 - BETA1 ** epoch)
    new = delta[rows, idx] - lr * corr * m[rows, idx] / (torch.sqrt(v[rows, idx]) + 1e-8)
    delta[rows, idx] = torch.maximum(torch.minimum(new, up[rows, idx]), down[rows, idx])
    t[rows, idx] = epoch + 1


@ATTACKS.register("zoo")
@dataclass(repr=False)
class ZOO(Attack):
    eps: float | str = "8/255"
    queries: int = 20000
    sigma: float | str = 1e-4
    learning_rate: float | str = 0.01
    initial_const: float | str = 0.25
    binary_search_steps: int = 1
    confidence: float | str = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.eps = number(self.eps)
        check_budget(self.eps, None, True, (0.0, 1.0))
        if self.bn_mode.value != "eval" or self.queries < 3 * self.binary_search_steps or self.sigma <= 0:
            raise SpecError("zoo: bn_mode eval, queries ≥ 3 per binary-search step, sigma > 0")

    def _loss(self, points, y, c, l2):
        margin = -cw_margin(self.model(points).float(), y, math.inf)          # Z_y − max_{i≠y} Z_i
        return c * (margin + self.confidence).clamp(min=0) + l2, margin

    @torch.no_grad()
    def search(self, x, y, g):
        """ZOO's best adversarial per example (x where none was found)."""
        b, d = len(x), x[0].numel()
        xf, rows = x.flatten(1), torch.arange(b, device=x.device)
        down, up = -xf, 1 - xf
        c = torch.full((b,), float(self.initial_const), device=x.device)
        lower, upper = torch.zeros(b, device=x.device), torch.full((b,), 1e10, device=x.device)
        best, best_l2 = xf.clone(), torch.full((b,), math.inf, device=x.device)
        iterations = self.queries // (3 * self.binary_search_steps)
        for _ in range(self.binary_search_steps):
            delta, m, v = torch.zeros_like(xf), torch.zeros_like(xf), torch.zeros_like(xf)
            t = torch.ones_like(xf)
            found = torch.zeros(b, dtype=torch.bool, device=x.device)
            for _ in range(iterations):
                idx = torch.randint(0, d, (b,), device=x.device, generator=g)
                e = torch.zeros_like(xf)
                e[rows, idx] = self.sigma
                points = torch.cat([xf + delta, xf + delta + e, xf + delta - e])
                l2 = torch.cat([(delta ** 2).sum(1), ((delta + e) ** 2).sum(1), ((delta - e) ** 2).sum(1)])
                loss, margin = self._loss(points.view(3 * b, *x.shape[1:]), y.repeat(3), c.repeat(3), l2)
                fooled = margin[:b] < 0                                          # the current point
                better = fooled & (l2[:b] < best_l2)
                best = torch.where(better[:, None], xf + delta, best)
                best_l2 = torch.where(better, l2[:b], best_l2)
                found |= fooled
                grad = (loss[b:2 * b] - loss[2 * b:]) / (2 * self.sigma)
                adam_coordinate(delta, m, v, t, rows, idx, grad, self.learning_rate, down, up)
            upper = torch.where(found, torch.minimum(upper, c), upper)          # C&W's binary search on c
            lower = torch.where(found, lower, torch.maximum(lower, c))
            c = torch.where(upper < 1e9, (lower + upper) / 2, c * 10)
        return best.view_as(x)

    def perturb(self, x, y, generator=None):
        with model_mode(self.model, False):
            adv = self.search(x.detach(), y, generator)
        within = (adv - x).flatten(1).abs().amax(1) <= self.eps + 1e-7
        return torch.where(within.view(-1, *([1] * (x.dim() - 1))), adv, x.detach())
