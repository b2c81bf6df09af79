"""PGD: projected gradient ascent (Madry et al., ICLR 2018).

Threat models: ℓ∞ (sign steps) and ℓ2 (normalised-gradient steps), inputs in [0, 1];
every iterate is projected onto the ε-ball and clamped to [0, 1].

Arguments (defaults):
  eps ("8/255"), step_size ("2/255"), steps (10), norm ("linf" | "l2"), restarts (1),
  loss ("ce" | "kl" | "cw"): cross-entropy; KL(p(x) ‖ p(x')) to the clean prediction,
      computed once in the attack's BN mode (TRADES/HAT); CW margin
      −max(z_y − max_{j≠y} z_j, −κ) with confidence ``kappa`` (0 in HAT, 50 in FAT),
  random_start ("uniform" | "normal" | "none"): U(−ε, ε) (uniform in the ℓ2 ball for ℓ2),
      ``normal_std``·N(0, I) with normal_std=0.001 (TRADES family), or none,
  clamp_start (True): clamp the start to the input box; the TRADES family does not,
  bounds ([0, 1]): the input box every iterate is clamped to; null for unbounded inputs
      (HAT's toy problem),
  logit_scale (1.0), margin (0.0): the loss sees s·(z − m·1_y) instead of the output z (HE's
      Eq. 6: the training loss as adversarial objective, HE's adaptive attack and AT_HE's
      training attacks; KL scales both sides and takes no margin),
  eps_scale (None): per-channel factors on ε, the step and the uniform start (ℓ∞ only): the
      ε-ball of an attack in a normalised input space, e.g. σ = (0.3081,) for MNIST (DRA §2.6),
  bn_mode ("eval" | "train").
Losses are summed over the batch, so each example's gradient is its own. With
several restarts an example keeps the first restart that fools the model, else the
one with the largest loss; restarts after the first attack only the examples still robust.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F

from . import ATTACKS
from ..errors import SpecError
from ..precision import varying_batch
from .base import Attack, check_budget, enum_value, number


class Norm(str, Enum):
    LINF = "linf"
    L2 = "l2"


class Loss(str, Enum):
    CE = "ce"
    KL = "kl"
    CW = "cw"


class Start(str, Enum):
    UNIFORM = "uniform"
    NORMAL = "normal"
    NONE = "none"


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def cw_margin(logits: torch.Tensor, y: torch.Tensor, kappa: float) -> torch.Tensor:
    """Per-example −max(z_y − max_{j≠y} z_j, −κ): larger when the example is closer to misclassified."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return -(z_y - other).clamp(min=-kappa)


@ATTACKS.register("pgd")
@dataclass(repr=False)
class PGD(Attack):
    eps: float | str = "8/255"
    step_size: float | str = "2/255"
    steps: int = 10
    norm: Norm = Norm.LINF
    restarts: int = 1
    loss: Loss = Loss.CE
    kappa: float = 0.0
    random_start: Start = Start.UNIFORM
    normal_std: float = 0.001
    clamp_start: bool = True
    bounds: tuple[float, float] | None = (0.0, 1.0)
    logit_scale: float | str = 1.0
    margin: float | str = 0.0
    eps_scale: list | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.eps, self.step_size = number(self.eps), number(self.step_size)
        self.norm = enum_value(Norm, self.norm, "norm")
        self.loss = enum_value(Loss, self.loss, "loss")
        self.random_start = enum_value(Start, self.random_start, "random_start")
        check_budget(self.eps, self.step_size, self.norm is Norm.LINF, self.bounds)
        if self.steps < 1 or self.restarts < 1:
            raise SpecError(f"steps and restarts must be at least 1, got steps={self.steps}, restarts={self.restarts}")
        if self.logit_scale <= 0 or (self.margin and self.loss is Loss.KL):
            raise SpecError(f"logit_scale must be positive and margin needs loss ce or cw, got "
                            f"logit_scale={self.logit_scale}, margin={self.margin}, loss={self.loss.value}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The output the objective is computed on (the model's; pgd_fn: its FN logits)."""
        return self.model(x)
        if self.eps_scale is not None and (self.norm is not Norm.LINF or not isinstance(self.eps_scale, (list, tuple))
                                           or any(number(s) <= 0 for s in self.eps_scale)):
            raise SpecError(f"eps_scale must be a list of positive per-channel factors (ℓ∞), got {self.eps_scale!r}")

    def scale(self, x: torch.Tensor) -> torch.Tensor | float:
        """The per-channel factor on ε and the step (1 without eps_scale)."""
        if self.eps_scale is None:
            return 1.0
        return torch.tensor([number(s) for s in self.eps_scale], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)

    def objective(self, logits: torch.Tensor, y: torch.Tensor, p_clean: torch.Tensor | None
                  ) -> torch.Tensor:
        """Per-example loss the attack ascends."""
        logits = logits.float()
        if self.margin:
            logits = logits - self.margin * F.one_hot(y, logits.shape[1]).to(logits.dtype)
        if self.logit_scale != 1:
            logits = self.logit_scale * logits
        if self.loss is Loss.CE:
            return F.cross_entropy(logits, y, reduction="none")
        if self.loss is Loss.KL:
            return F.kl_div(F.log_softmax(logits, 1), p_clean, reduction="none").sum(1)
        return cw_margin(logits, y, self.kappa)

    def start(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        if self.random_start is Start.NONE:
            return x.clone()
        if self.random_start is Start.NORMAL:
            delta = self.normal_std * torch.randn(x.shape, device=x.device, generator=g)
        elif self.norm is Norm.LINF:
            delta = (torch.rand(x.shape, device=x.device, generator=g) * 2 - 1) * self.eps * self.scale(x)
        else:  # uniform in the ℓ2 ball: Gaussian direction, radius ε·U^(1/d)
            d = torch.randn(x.shape, device=x.device, generator=g)
            u = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, generator=g)
            delta = d / _flat_norm(d) * self.eps * u ** (1.0 / x[0].numel())
        x0 = x + delta
        return self.clamp(x0) if self.clamp_start else x0

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.bounds is None else x.clamp(*self.bounds)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        delta = x_adv - x
        if self.norm is Norm.LINF:
            delta = delta.clamp(-self.eps, self.eps) if self.eps_scale is None else \
                torch.maximum(torch.minimum(delta, self.eps * self.scale(x)), -self.eps * self.scale(x))
        else:
            delta = delta * (self.eps / _flat_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
        return self.clamp(x + delta)

    def step(self, x_adv: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        if self.norm is Norm.LINF:
            return x_adv + self.step_size * self.scale(x_adv) * grad.sign()
        return x_adv + self.step_size * grad / _flat_norm(grad).clamp_min(1e-12)

    def run_once(self, x, y, p_clean, g):
        return self.iterate(x, y, p_clean, self.start(x, g))

    def iterate(self, x, y, p_clean, x_adv, subset=False):
        """The attack's steps from the start ``x_adv`` (``subset``: of a batch's examples, a size
        of its own, dynamic for a compiled model: see precision.varying_batch)."""
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = self.objective(self.forward(varying_batch(x_adv) if subset else x_adv), y, p_clean).sum()
            grad, = torch.autograd.grad(loss, x_adv)
            x_adv = self.project(self.step(x_adv.detach(), grad), x)
        return x_adv.detach()

    def perturb(self, x, y, generator=None):
        x = x.detach()
        p_clean = None
        if self.loss is Loss.KL:
            with torch.no_grad():
                p_clean = F.softmax(self.logit_scale * self.forward(x).float(), 1)
        best = self.run_once(x, y, p_clean, generator)
        if self.restarts == 1:
            return best
        with torch.no_grad():
            logits = self.forward(best)
            best_fooled = logits.argmax(1) != y
            best_loss = self.objective(logits, y, p_clean)
        for _ in range(self.restarts - 1):
            # later restarts attack only the examples still robust (the official evaluation
            # code's semantics: the same answer, less work). Starts are drawn for the whole
            # batch, so each example starts where a full restart would start it.
            start = self.start(x, generator)
            todo = (~best_fooled).nonzero().squeeze(1)       # one host sync per restart
            if len(todo) == 0:
                continue
            subset = len(todo) < len(x)
            cand = self.iterate(x[todo], y[todo], None if p_clean is None else p_clean[todo], start[todo], subset)
            with torch.no_grad():
                logits = self.forward(varying_batch(cand) if subset else cand)
                fooled = logits.argmax(1) != y[todo]
                loss = self.objective(logits, y[todo], None if p_clean is None else p_clean[todo])
            take = fooled | (loss > best_loss[todo])
            rows = todo[take]
            best[rows], best_loss[rows], best_fooled[rows] = cand[take], loss[take], fooled[take]
        return best
