"""SPSA (Uesato et al., ICML 2018) as HE describes and evaluates it (Pang et al., NeurIPS 2020,
Sec. 4.2, App. B.2 Eqs. 18 and 23, Table 8 "SPSA-20/50/80"); NES (bench/attacks/nes.py)
is the same attack with Gaussian directions.

Threat model ℓ∞, score-based black box (the model's outputs only), inputs in [0, 1], model
in eval mode. With J(x, y) = Z(x)_y − max_{i≠y} Z(x)_i on the model's output Z ("instead of
the cross-entropy loss"), each iteration estimates the gradient from q random directions u_i
(Rademacher ±1 here) by antithetic differences,
    ĝ = (1/q) Σ_i [J(x + σu_i, y) − J(x − σu_i, y)] / (2σ) · u_i          (Eq. 23),
and takes the BIM step of Eq. 18 downhill in J, x ← clip_{x,ε}(x − step_size·sign(ĝ)),
clamped to [0, 1] (Uesato et al.'s Adam update is not what B.2 states). Each iteration costs
2q queries and one prediction. An example stops once it is misclassified; the accuracy
after each iteration in ``checkpoints`` is recorded (``at``: {"20": …, "50": …, "80": …}),
so Table 8's 20, 50 and 80 iterations come from one run: with a fixed seed the first k
iterations do not depend on the total.
Arguments (defaults): eps ("8/255"; HE states none), step_size (None: ε/10; HE states none),
iterations (80), checkpoints ([20, 50, 80]), samples q (128), sigma (0.001) ("σ = 0.001 and
q = 128 ... as default in the original papers"), chunk (64: directions per forward pass, a
memory knob only), bn_mode ("eval" only). Directions come from the evaluation's generator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from . import ATTACKS
from ..errors import SpecError
from .base import Attack, check_budget, model_mode, number
from .pgd import cw_margin


@ATTACKS.register("spsa")
@dataclass(repr=False)
class SPSA(Attack):
    eps: float | str = "8/255"
    step_size: float | str | None = None
    iterations: int = 80
    checkpoints: list[int] | None = None
    samples: int = 128
    sigma: float | str = 0.001
    chunk: int = 64
    metrics: ClassVar[tuple[str, ...]] = ("clean", "robust", "at")
    distribution: ClassVar[str] = "rademacher"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.eps = number(self.eps)
        self.step_size = self.eps / 10 if self.step_size is None else number(self.step_size)
        self.sigma = number(self.sigma)
        self.checkpoints = sorted(self.checkpoints if self.checkpoints is not None else [20, 50, 80])
        check_budget(self.eps, self.step_size, True, (0.0, 1.0))
        if (self.iterations < 1 or self.samples < 1 or self.chunk < 1 or self.sigma <= 0 or self.bn_mode.value != "eval"
                or any(not 1 <= c <= self.iterations for c in self.checkpoints)):
            raise SpecError(f"{type(self).__name__.lower()}: iterations, samples, chunk ≥ 1, sigma > 0, checkpoints "
                            f"within 1..iterations, bn_mode eval; got {self.params()}")

    def directions(self, shape, device, g) -> torch.Tensor:
        if self.distribution == "rademacher":
            return torch.randint(0, 2, shape, device=device, generator=g).float() * 2 - 1
        return torch.randn(shape, device=device, generator=g)

    def margin(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """J(x, y) = Z_y − max_{i≠y} Z_i per example."""
        return -cw_margin(self.model(x).float(), y, float("inf"))

    def estimate(self, x: torch.Tensor, y: torch.Tensor, g) -> torch.Tensor:
        """ĝ of Eq. 23 for every example of the batch."""
        grad = torch.zeros_like(x)
        for start in range(0, self.samples, self.chunk):
            k = min(self.chunk, self.samples - start)
            u = self.directions((k, *x.shape), x.device, g)                         # k × B × …
            both = torch.cat([x + self.sigma * u, x - self.sigma * u]).flatten(0, 1)  # 2k·B images
            j = self.margin(both, y.repeat(2 * k)).view(2, k, len(x))
            diff = (j[0] - j[1]) / (2 * self.sigma)                                  # k × B
            grad += (diff.view(k, len(x), *([1] * (x.dim() - 1))) * u).sum(0)
        return grad / self.samples

    @torch.no_grad()
    def run(self, x, y, g):
        """(x′, first iteration at which each example was misclassified, or iterations + 1)."""
        x_adv, x = x.clone(), x.detach()
        broken = torch.full((len(x),), self.iterations + 1, dtype=torch.long, device=x.device)
        broken[self.model(x).argmax(1) != y] = 0
        for t in range(1, self.iterations + 1):
            active = broken > t - 1
            if not active.any():
                break
            idx = active.nonzero().flatten()
            step = x_adv[idx] - self.step_size * self.estimate(x_adv[idx], y[idx], g).sign()
            step = torch.min(torch.max(step, x[idx] - self.eps), x[idx] + self.eps).clamp(0, 1)
            x_adv[idx] = step
            fooled = self.model(step).argmax(1) != y[idx]
            broken[idx[fooled]] = t
        return x_adv, broken

    def perturb(self, x, y, generator=None):
        with model_mode(self.model, False):
            return self.run(x, y, generator)[0]

    def evaluate(self, loader, seed: int = 0, progress=None):
        from ..data.loader import epoch_generator

        g = epoch_generator(loader.device, seed, 0, stream=1)
        marks = sorted({*self.checkpoints, self.iterations})
        counts = torch.zeros(len(marks) + 1, dtype=torch.long, device=loader.device)   # clean, then per mark
        with model_mode(self.model, False):
            for x, y in loader.batches():
                _, broken = self.run(x, y, g)
                counts[0] += (broken > 0).sum()
                for i, k in enumerate(marks, start=1):
                    counts[i] += (broken > k).sum()
                if progress is not None:
                    progress.update(1)
        acc = (100.0 * counts.double() / loader.n).tolist()
        at = {str(k): a for k, a in zip(marks, acc[1:])}
        return {"n": loader.n, "clean": acc[0], "robust": at[str(self.iterations)],
                "at": {str(k): at[str(k)] for k in self.checkpoints}}
