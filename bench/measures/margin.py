"""Directional margin along initial adversarial directions (HAT: Rade & Moosavi-Dezfooli,
ICML 2021 workshop, Eq. 1–2, Sec. 3, Table 1, App. E.4 Table 6).

What it measures: for each test example x, the margin μ(x, r̂) = min |α| such that
F(x + α·r̂) ≠ F(x) (Eq. 1; α may be negative, so both r̂ and −r̂ are searched), where F is
the argmax of the evaluated model and r̂ = r/‖r‖₂ is the example's *initial adversarial
direction*: r = x_adv − x from PGD on the standard model (helper ``directions``), Eq. 2.
Margins are in ℓ2 units (ℓ∞ ε = 8/255 on CIFAR-10 is ‖r‖₂ ≤ 1.74). The paper reports the
median over a random subset of 1024 test images (the protocol's ``n_test``).

Search: the points x ± α·r̂ are NOT clamped to [0, 1]; the margin is a property of the
decision boundary along a line, not of valid images. |α| grows geometrically from
``start`` (×2 per step, up to ``cap``) until the prediction changes on either side (or, with
``sides: positive``, along +r̂ only, as HAT's code searches), then
bisection shrinks the bracket to ``resolution``; the reported value is the bracket's upper
end, a |α| at which the prediction is seen to differ, so the first change seen lies within
``resolution`` below it. A region of another class narrower than the sampling grid can be
missed (as by any line search). Examples whose prediction never changes up to ``cap`` get
the value ``cap`` and are counted (``capped``). Fixed iteration counts, no host
synchronisation inside the loops.

Arguments (defaults):
  attack (PGD-20 ℓ∞, ε=8/255, step 2/255, uniform start, CE, eval-mode BN): the attack
      giving R_init. The paper does not state the PGD settings used for R_init; these are
      HAT's own PGD-20 evaluation setting (App. E.1; its code's test PGD-20, step 2/255,
      uniform start),
  cap (100.0, ℓ2): search limit; HAT's median margins are ≈ 8–11 (Tables 1 and 6),
  resolution (0.01, ℓ2): absolute bisection resolution (the paper prints one decimal),
  start (0.01, ℓ2): first |α| tried,
  sides ("both"): "both" searches ±r̂ (Eq. 1); "positive" searches +r̂ only. HAT's code
      searches +r̂ only up to 35 with precision 0.1: sides positive, cap 35, resolution 0.1.
Input range: [0, 1] for the attack (its iterates are clamped); the margin search is not.
Result: n, median, mean, capped, margins (per example), clean (accuracy of the evaluated
model on these examples, %), cap, resolution, start, sides, attack.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..attacks import build as build_attack
from ..attacks.base import model_mode
from ..numbers import parse_number
from . import MEASURES
from .base import Measure

DEFAULT_ATTACK: dict[str, Any] = {"name": "pgd", "eps": "8/255", "step_size": "2/255", "steps": 20,
                                  "norm": "linf", "random_start": "uniform", "loss": "ce",
                                  "bn_mode": "eval"}


def search_schedule(cap: float, resolution: float, start: float) -> tuple[list[float], int]:
    """The |α| values tried while bracketing (start·2^k, the last one equal to ``cap``) and
    the number of bisection steps that shrink the widest bracket to ``resolution``."""
    if not 0 < start <= cap or resolution <= 0:
        raise ValueError(f"need 0 < start ≤ cap and resolution > 0 (start={start}, cap={cap}, "
                         f"resolution={resolution})")
    grid = [min(start * 2.0 ** k, cap) for k in range(math.ceil(math.log2(cap / start)) + 1)]
    widest = max(b - a for a, b in zip([0.0] + grid, grid))
    return grid, max(0, math.ceil(math.log2(widest / resolution)))


@torch.no_grad()
def directional_margin(model: nn.Module, x: torch.Tensor, directions: torch.Tensor, *,
                       cap: float = 100.0, resolution: float = 0.01, start: float = 0.01,
                       sides: str = "both", return_capped: bool = False):
    """Per example, the smallest |α| (ℓ2 units) with argmax f(x + α·r̂) ≠ argmax f(x), searched
    along both r̂ and −r̂ (``sides="both"``, HAT Eq. 1) or along +r̂ only (``"positive"``, α > 0,
    HAT's code), r̂ = direction/‖direction‖₂. x + α·r̂ is not clamped to
    [0, 1]: the margin is a property of the decision boundary along the line.

    Geometric bracketing from ``start`` (×2 up to ``cap``), then bisection to ``resolution``;
    returns the bracket's upper end (prediction seen to differ there; the first change seen
    lies in (value − resolution, value]). Examples without a change up to ``cap`` (also
    zero directions) get ``cap``; with ``return_capped`` a bool mask of them is returned too.
    Runs on the whole batch with the model in eval mode (restored afterwards).
    """
    if sides not in ("both", "positive"):
        raise ValueError(f"sides must be 'both' or 'positive', got {sides!r}")
    grid, n_bisect = search_schedule(cap, resolution, start)
    x = x.detach()
    shape = (-1,) + (1,) * (x.dim() - 1)
    flat = directions.detach().flatten(1).to(x.dtype)
    r_hat = (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(x)
    b = x.shape[0]
    with model_mode(model, False):
        label = model(x).argmax(1)

        def changed(alpha: torch.Tensor) -> torch.Tensor:
            step = alpha.view(shape) * r_hat
            if sides == "positive":
                return model(x + step).argmax(1) != label
            pred = model(torch.cat([x + step, x - step])).argmax(1)
            return (pred[:b] != label) | (pred[b:] != label)

        lo = torch.zeros(b, device=x.device, dtype=x.dtype)
        hi = torch.full_like(lo, cap)
        found = torch.zeros(b, device=x.device, dtype=torch.bool)
        for a in grid:                              # bracket: lo unchanged, hi changed
            alpha = torch.full_like(lo, a)
            flip = changed(alpha)
            hi = torch.where(flip & ~found, alpha, hi)
            lo = torch.where(~flip & ~found, alpha, lo)
            found |= flip
        for _ in range(n_bisect):                   # capped examples: lo = hi = cap, unchanged
            mid = (lo + hi) / 2
            flip = changed(mid)
            hi = torch.where(flip, mid, hi)
            lo = torch.where(flip, lo, mid)
    return (hi, ~found) if return_capped else hi


def adversarial_directions(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                           attack_cfg: dict[str, Any] | None = None,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Unnormalised directions r = x_adv − x of HAT Eq. 2: the suite's attack (default
    ``DEFAULT_ATTACK``: PGD-20 ℓ∞, ε=8/255, step 2/255, uniform start, CE; the paper does not
    state the PGD settings used for R_init) run on ``model`` against the labels ``y``.
    The caller (``directional_margin``) normalises."""
    attack = build_attack(attack_cfg or DEFAULT_ATTACK, model)
    return attack(x, y, generator) - x


@MEASURES.register("margin")
class Margin(Measure):
    """Median directional margin of the evaluated model along R_init of the helper
    ``directions`` (the standard model), HAT Tables 1 and 6."""

    name = "margin"
    defaults = {"attack": DEFAULT_ATTACK, "cap": 100.0, "resolution": 0.01, "start": 0.01, "sides": "both"}
    helpers_required = ("directions",)

    def evaluate(self, loader, seed: int = 0, progress=None) -> dict[str, Any]:
        from ..data.loader import epoch_generator

        cap, resolution, start = (parse_number(v) for v in (self.cap, self.resolution, self.start))
        g = epoch_generator(loader.device, seed, 0, stream=3)
        margins, capped = [], []
        correct = torch.zeros((), dtype=torch.long, device=loader.device)
        for x, y in loader.batches():
            r = adversarial_directions(self.helpers["directions"], x, y, self.attack, g)
            m, c = directional_margin(self.model, x, r, cap=cap, resolution=resolution, start=start,
                                      sides=self.sides, return_capped=True)
            with model_mode(self.model, False), torch.no_grad():
                correct += (self.model(x).argmax(1) == y).sum()
            margins.append(m)
            capped.append(c)
            if progress is not None:
                progress.update(1)
        m = torch.cat(margins).double()
        return {"n": loader.n, "median": torch.quantile(m, 0.5).item(), "mean": m.mean().item(),
                "capped": int(torch.cat(capped).sum().item()), "margins": m.tolist(),
                "clean": 100.0 * correct.item() / loader.n, "cap": cap, "resolution": resolution,
                "start": start, "sides": self.sides, "attack": dict(self.attack)}
