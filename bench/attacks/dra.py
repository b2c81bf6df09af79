"""DRA: the dynamically regulated adversary (Hou, Zhou, Han, Musilek & Li, IJCNN 2022, Algorithm 1).

Threat model: no ℓ∞ ball (the paper calls DRA "unbounded" and "soft-bounded"); an ℓ1-scaled
budget of T steps of α = ε/T along the ℓ1-normalised loss gradient (no sign), after which only
the p most significant input coordinates keep their perturbation, the others are reset to the
clean value. Inputs in [0, 1]; every iterate is clamped to [0, 1] by default.

Algorithm 1 as implemented (defaults marked ★, per sample i with N = C·H·W coordinates):
  α = ε/T;  x_0 = x (★ no random start)
  for t = 0 … T−1:  g_t = ∇x L(f(x_t), y);   x_{t+1} = clamp01(x_t + α·g_t / s(g_t))
  keep = the k = round(p·N) coordinates with the largest |score| (★ score = |g_{T−1}|; ties to
         the lower index)
  x*   = where(keep, x_T, x)
The budget ``s`` fixes the units of ε, the question the paper leaves open (its ε values are
"2 → 0.5" and "1" on CIFAR-10, "0.1" on MNIST, and "DRA ε = 1 ↔ PGD ε = 2.55"):
  ★ per_pixel: s(g) = ‖g‖₁ / N, so each step moves the image by α per coordinate on average
      (‖step‖₁ = N·α) and ε is in the dataset's PGD units (CIFAR-10 "1" is 1/255, MNIST 0.1 is
      0.1): with the same ε DRA spends PGD's ℓ1 budget;
    l1: s(g) = ‖g‖₁, the literal ‖x_{t+1} − x_t‖₁ = α, ε an ℓ1 radius in [0, 1] units.
Zero gradients (a saturated, already-misclassified example) are guarded: s is floored at 1e-12,
so such an example does not move. The loss is summed over the batch (each example's gradient is
its own; the normalisation makes the result independent of the reduction).

Arguments (defaults; the alternatives are readings of the paper, see bench/specs/dra.yaml choices):
  eps ("1/255"), steps (5), p ("1/3": the fraction of coordinates kept; 0 returns x, 1 masks nothing),
  budget ("per_pixel" | "l1"),
  norm_scope ("sample" | "batch": ‖·‖₁ over the whole batch tensor, a common slip),
  score ("grad_last": |∇| at x_{T−1}, the last gradient of the loop | "grad_final": at x_T, one more
      pass | "grad_clean": at x | "delta": |x_T − x|),
  rank ("magnitude" | "signed": the largest signed values),
  rank_scope ("sample": over C·H·W, channels independent as the paper counts 3072 values |
      "channel": k per channel over H·W),
  rounding ("round" | "floor" | "ceil") of p·N,
  mask ("final": once after the T steps, as Algorithm 1 | "every_step": after each step),
  clamp ("every_step" | "final" | "none": the literal "unbounded"),
  loss ("ce" on the labels, as Algorithm 1 | "kl": KL(p(x) ‖ p(x_t)), TRADES-style, needs a start ≠ x),
  random_start ("none" | "normal": x + normal_std·N(0, I)), normal_std (0.001),
  std (None: pixel space | per-channel σ: the steps are taken in the normalised space (x − μ)/σ,
      gradient σ·∇, step mapped back ×σ, scores on the normalised gradient),
  bn_mode ("eval" | "train").
Result keys (``metrics``): clean, robust, success_rate = 100·(clean-correct examples the attack
fools)/(clean-correct examples).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

import torch
import torch.nn.functional as F

from . import ATTACKS
from ..errors import SpecError
from .base import Attack, check_budget, enum_value, number


class Budget(str, Enum):
    PER_PIXEL = "per_pixel"
    L1 = "l1"


class Scope(str, Enum):
    SAMPLE = "sample"
    BATCH = "batch"


class Score(str, Enum):
    GRAD_LAST = "grad_last"
    GRAD_FINAL = "grad_final"
    GRAD_CLEAN = "grad_clean"
    DELTA = "delta"


class Rank(str, Enum):
    MAGNITUDE = "magnitude"
    SIGNED = "signed"


class RankScope(str, Enum):
    SAMPLE = "sample"
    CHANNEL = "channel"


class Rounding(str, Enum):
    ROUND = "round"
    FLOOR = "floor"
    CEIL = "ceil"


class When(str, Enum):
    FINAL = "final"
    EVERY_STEP = "every_step"


class Clamp(str, Enum):
    EVERY_STEP = "every_step"
    FINAL = "final"
    NONE = "none"


class Loss(str, Enum):
    CE = "ce"
    KL = "kl"


class Start(str, Enum):
    NONE = "none"
    NORMAL = "normal"


FLOOR = 1e-12   # the guard on the ℓ1 normalisation (zero gradients)


def kept(p: float, n: int, rounding: Rounding) -> int:
    """How many of ``n`` coordinates the top-p mask keeps (p = 1/3 of 3072 is exactly 1024)."""
    v = p * n
    k = {Rounding.ROUND: math.floor(v + 0.5), Rounding.FLOOR: math.floor(v + 1e-9),
         Rounding.CEIL: math.ceil(v - 1e-9)}[rounding]
    return min(max(k, 0), n)


def top_mask(score: torch.Tensor, k: int, per_channel: bool) -> torch.Tensor:
    """Boolean mask of the k largest scores per sample (or per sample and channel); ties go
    to the lower index (a stable sort), so exactly k are kept even among equal scores (e.g.
    the zero gradients of dead ReLUs)."""
    flat = score.flatten(2) if per_channel else score.flatten(1)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    if k > 0:
        keep.scatter_(-1, torch.argsort(flat, dim=-1, descending=True, stable=True)[..., :k], True)
    return keep.view_as(score)


@ATTACKS.register("dra")
@dataclass(repr=False)
class DRA(Attack):
    eps: float | str = "1/255"
    steps: int = 5
    p: float | str = "1/3"
    budget: Budget = Budget.PER_PIXEL
    norm_scope: Scope = Scope.SAMPLE
    score: Score = Score.GRAD_LAST
    rank: Rank = Rank.MAGNITUDE
    rank_scope: RankScope = RankScope.SAMPLE
    rounding: Rounding = Rounding.ROUND
    mask: When = When.FINAL
    clamp: Clamp = Clamp.EVERY_STEP
    loss: Loss = Loss.CE
    random_start: Start = Start.NONE
    normal_std: float = 0.001
    std: list | None = None
    metrics: ClassVar[tuple[str, ...]] = ("clean", "robust", "success_rate")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.eps, self.p = number(self.eps), number(self.p)
        for name, enum in (("budget", Budget), ("norm_scope", Scope), ("score", Score), ("rank", Rank),
                           ("rank_scope", RankScope), ("rounding", Rounding), ("mask", When), ("clamp", Clamp),
                           ("loss", Loss), ("random_start", Start)):
            setattr(self, name, enum_value(enum, getattr(self, name), name))
        # a per-pixel budget is an average ℓ∞-like step in [0, 1]: "2" for 2/255 is caught here
        check_budget(self.eps, None, self.budget is Budget.PER_PIXEL, (0.0, 1.0))
        if self.steps < 1:
            raise SpecError(f"steps must be at least 1, got {self.steps}")
        if not 0.0 <= self.p <= 1.0:
            raise SpecError(f"p is the fraction of coordinates kept, in [0, 1]; got {self.p}")
        if self.loss is Loss.KL and self.random_start is Start.NONE:
            raise SpecError("loss 'kl' needs random_start 'normal': at x_0 = x the KL gradient is exactly zero")
        if self.std is not None and (not isinstance(self.std, (list, tuple)) or not self.std
                                     or any(number(s) <= 0 for s in self.std)):
            raise SpecError(f"std must be a list of positive per-channel σ, got {self.std!r}")

    # ---- the pieces of Algorithm 1 ----------------------------------------------------------
    def objective(self, logits: torch.Tensor, y: torch.Tensor, p_clean: torch.Tensor | None) -> torch.Tensor:
        """Per-example loss the attack ascends."""
        logits = logits.float()
        if self.loss is Loss.CE:
            return F.cross_entropy(logits, y, reduction="none")
        return F.kl_div(F.log_softmax(logits, 1), p_clean, reduction="none").sum(1)

    def _sigma(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.std is None:
            return None
        if len(self.std) != x.shape[1]:
            raise SpecError(f"std has {len(self.std)} values for {x.shape[1]}-channel inputs")
        return torch.tensor([number(s) for s in self.std], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)

    def gradient(self, x_t: torch.Tensor, y: torch.Tensor, p_clean: torch.Tensor | None,
                 sigma: torch.Tensor | None) -> torch.Tensor:
        """∇ of the summed per-example loss at x_t (w.r.t. the normalised input if ``std``)."""
        x_t = x_t.detach().requires_grad_(True)
        grad, = torch.autograd.grad(self.objective(self.model(x_t), y, p_clean).sum(), x_t)
        return grad if sigma is None else grad * sigma

    def step(self, g: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """α·g / s(g) in pixel space: ‖·‖₁ per sample (or batch) is N·α (per_pixel) or α (l1)."""
        alpha = self.eps / self.steps
        a = g.abs()
        dims = tuple(range(1, g.dim())) if self.norm_scope is Scope.SAMPLE else tuple(range(g.dim()))
        s = a.mean(dims, keepdim=True) if self.budget is Budget.PER_PIXEL else a.sum(dims, keepdim=True)
        delta = alpha * g / s.clamp_min(FLOOR)
        return delta if sigma is None else delta * sigma

    def k(self, x: torch.Tensor) -> int:
        per_channel = self.rank_scope is RankScope.CHANNEL
        return kept(self.p, x[0, 0].numel() if per_channel else x[0].numel(), self.rounding)

    def keep(self, score: torch.Tensor, k: int) -> torch.Tensor:
        return top_mask(score.abs() if self.rank is Rank.MAGNITUDE else score, k,
                        self.rank_scope is RankScope.CHANNEL)

    def _box(self, x: torch.Tensor, when: tuple[Clamp, ...]) -> torch.Tensor:
        return x.clamp(0.0, 1.0) if self.clamp in when else x

    def trajectory(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
                   k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The T steps (masked after each step with ``mask: every_step``, keeping ``k``) and the
        significance score for the final mask. With ``mask: final`` neither depends on p, so one
        trajectory serves every p (bench/measures/dra_success.py)."""
        x = x.detach()
        sigma = self._sigma(x)
        p_clean = None
        if self.loss is Loss.KL:
            with torch.no_grad():
                p_clean = F.softmax(self.model(x).float(), 1)
        x_t = x.clone()
        if self.random_start is Start.NORMAL:
            x_t = x + self.normal_std * torch.randn(x.shape, device=x.device, generator=generator)
        g_clean = None
        g = None
        for t in range(self.steps):
            g = self.gradient(x_t, y, p_clean, sigma)
            if t == 0 and self.random_start is Start.NONE:
                g_clean = g
            x_t = self._box(x_t.detach() + self.step(g, sigma), (Clamp.EVERY_STEP,))
            if self.mask is When.EVERY_STEP:
                x_t = torch.where(self.keep(self._score(x, x_t, g, None, y, p_clean, sigma), k), x_t, x)
        return x_t, self._score(x, x_t, g, g_clean, y, p_clean, sigma)

    def _score(self, x, x_t, g_last, g_clean, y, p_clean, sigma) -> torch.Tensor:
        if self.score is Score.GRAD_LAST:
            return g_last
        if self.score is Score.DELTA:
            return x_t - x
        if self.score is Score.GRAD_FINAL:
            return self.gradient(x_t, y, p_clean, sigma)
        return g_clean if g_clean is not None else self.gradient(x, y, p_clean, sigma)

    def finish(self, x: torch.Tensor, x_t: torch.Tensor, score: torch.Tensor, k: int) -> torch.Tensor:
        """x* = x_T on the k most significant coordinates, x elsewhere (then the final box)."""
        if k == 0:
            return x.clone()
        full = score[0, 0].numel() if self.rank_scope is RankScope.CHANNEL else score[0].numel()
        out = x_t if k >= full else torch.where(self.keep(score, k), x_t, x)   # p = 1: no mask
        return self._box(out, (Clamp.EVERY_STEP, Clamp.FINAL))

    def perturb(self, x, y, generator=None):
        x = x.detach()
        k = self.k(x)
        if k == 0:
            return x.clone()
        x_t, score = self.trajectory(x, y, generator, k)
        return self.finish(x, x_t, score, k)

    def evaluate(self, loader, seed: int = 0, progress=None):
        result = super().evaluate(loader, seed=seed, progress=progress)
        result["success_rate"] = (100.0 * (result["clean"] - result["robust"]) / result["clean"]
                                  if result["clean"] > 0 else None)
        return result
