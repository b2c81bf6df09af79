"""RayS: a ray searching method for hard-label adversarial attack (Chen & Gu, KDD 2020),
as HE evaluates it (Pang et al., NeurIPS 2020, Table 6: "For RayS, we evaluate on 1,000
test samples due to the high computation"; the 1,000 points are the protocol's n_test).

Threat model ℓ∞, inputs in [0, 1], hard-label (only argmax predictions are queried), model in
eval mode; deterministic. Following the reference algorithm (uclaml/RayS ``RayS.py``): the
ray direction is a sign vector s (initially all +1); at each iteration the next block of a
hierarchical partition of the coordinates (halves, quarters, … down to single coordinates,
then again from the top) is flipped, and the flip is kept iff the model is already fooled at
the current best distance d_t along the flipped ray (one query), in which case a binary
search (tolerance ``tol`` on the ℓ2 length along the unit ray s/‖s‖₂, the reference's
parameterisation) shrinks d_t. Points are x + d·s/‖s‖₂ clamped to [0, 1]; the ℓ∞ distance of
the best one is the example's decision-boundary distance, and the example counts as broken
iff it is ≤ ε. An example stops once it is broken (the reference keeps querying; robust
accuracy does not change) or after ``queries`` queries (a binary search in progress may
finish past the limit, as in the reference).
Arguments (defaults): eps ("8/255"), queries (40000, RayS' README for robustness
evaluation; HE does not state it), tol (1e-3), bn_mode ("eval" only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import ATTACKS
from ..errors import SpecError
from .base import Attack, check_budget, model_mode, number


@ATTACKS.register("rays")
@dataclass(repr=False)
class RayS(Attack):
    eps: float | str = "8/255"
    queries: int = 40000
    tol: float | str = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        self.eps = number(self.eps)
        check_budget(self.eps, None, True, (0.0, 1.0))
        if self.queries < 1 or self.tol <= 0 or self.bn_mode.value != "eval":
            raise SpecError("rays: queries ≥ 1, tol > 0, bn_mode eval")

    @torch.no_grad()
    def perturb(self, x, y, generator=None):
        """x′ where RayS found the boundary within ε, else x (the example is not broken)."""
        with model_mode(self.model, False):
            x_final = self.search(x.detach(), y)
        dist = (x_final - x).flatten(1).abs().amax(1)
        return torch.where((dist <= self.eps).view(-1, *([1] * (x.dim() - 1))), x_final, x.detach())

    def _fooled(self, x, y, mask, queries):
        """One query per example in ``mask``: is x (at those examples) misclassified?"""
        queries[mask] += 1
        return self.model(x[mask]).argmax(1) != y[mask]

    def search(self, x, y):
        """The closest boundary point found along the best sign ray (clamped to [0, 1])."""
        b, shape = len(x), x.shape
        dim = x[0].numel()
        view = (-1,) + (1,) * (x.dim() - 1)
        point = lambda sgn, d: (x + d.view(view) * sgn).clamp(0, 1)
        queries = torch.zeros(b, dtype=torch.long, device=x.device)
        sgn = torch.ones_like(x)                    # the best ray direction s
        d_t = torch.full((b,), math.inf, device=x.device)
        x_final = point(sgn / math.sqrt(dim), d_t)
        block_level = block_ind = 0
        while True:
            dist = (x_final - x).flatten(1).abs().amax(1)
            valid = (queries < self.queries) & (dist > self.eps)
            if not valid.any():
                return x_final
            block_size = math.ceil(dim / 2 ** block_level)
            start, end = block_ind * block_size, min(dim, (block_ind + 1) * block_size)
            attempt = sgn.clone().flatten(1)
            attempt[valid, start:end] *= -1
            attempt = attempt.view(shape)
            unit = attempt / attempt.flatten(1).norm(dim=1).view(view)
            # the reference's binary_search: try the flipped ray at the current distance first
            d_start = torch.zeros(b, device=x.device)
            d_end = d_t.clone()
            search = torch.zeros(b, dtype=torch.bool, device=x.device)
            search[valid] = self._fooled(point(unit, d_t), y, valid, queries)
            d_end[search] = torch.minimum(d_t, attempt.flatten(1).norm(dim=1))[search]
            while search.any():
                d_mid = (d_start + d_end) / 2
                succ = torch.zeros(b, dtype=torch.bool, device=x.device)
                succ[search] = self._fooled(point(unit, d_mid), y, search, queries)
                d_end = torch.where(search & succ, d_mid, d_end)
                d_start = torch.where(search & ~succ, d_mid, d_start)
                search &= (d_end - d_start) > self.tol
            better = d_end < d_t
            d_t = torch.where(better, d_end, d_t)
            x_final = torch.where(better.view(view), point(unit, d_end), x_final)
            sgn = torch.where(better.view(view), attempt, sgn)
            block_ind += 1
            if block_ind == 2 ** block_level or end == dim:
                block_level, block_ind = block_level + 1, 0
