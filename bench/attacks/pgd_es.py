"""PGD-K-τ: early-stopped PGD (Zhang et al., ICML 2020, "Attacks Which Do Not Kill Training
Make Adversarial Learning Stronger", Algorithm 1; Algorithm 3 with the KL inner loss).

Threat models: ℓ∞ (sign steps, the paper's) and ℓ2, inputs in [0, 1]. Every iterate is
clamped to [0, 1] and, unless ``project`` is false, projected onto the ε-ball.

Per example, independently: a counter starts at τ and is never reset. Before each of the
K steps the current iterate is checked; if it is misclassified (argmax of the logits ≠ y)
and the counter is 0, the example stops and keeps that iterate (later steps never touch
it); if it is misclassified and the counter is above 0, the counter is decremented and the
example keeps stepping; a correctly classified example keeps stepping. After K steps the
remaining examples are returned without a final check (the code's ``earlystop.py``). So an
example takes K steps unless τ + 1 of its checks find it misclassified, and with τ ≥ K every
example takes K steps: the iterates, the random start and the generator stream are exactly
PGD-K's (``bench/attacks/pgd.py``, the same start, loss, step and projection code).

Arguments (defaults; PGD's where shared):
  eps ("8/255"), step_size ("2/255"), steps (10, K), tau (0, τ),
  norm ("linf" | "l2"), loss ("ce" | "kl" | "cw"): CE (FAT, FAT for MART); KL(p(x) ‖ p(x'))
      to the clean prediction computed once in the attack's BN mode (FAT for TRADES, Alg. 3;
      the stopping check still uses the label y); CW margin with ``kappa``,
  random_start ("uniform" | "normal" | "none"): U(−ε, ε) (FAT.py), ``normal_std``·N(0, I)
      (0.001, FAT for TRADES / MART), or none (Algorithm 1 literally, x̃ ← x; App. B),
  clamp_start (True): the FAT code clamps every start to [0, 1],
  omega (0.0): per-step noise ω·N(0, I) added before the projection (FAT.py's default 0.001;
      the paper's update has none, so 0 reproduces the paper),
  project (True): false is App. B's search without ε-ball projection (Eq. 6): the iterate
      moves by at most K·α in ℓ∞ (still clamped to [0, 1]),
  bounds ([0, 1]), bn_mode ("eval": the FAT code's ``model.eval()``).
Losses are summed over the examples still searching (the code's mean has the same sign),
so each example's gradient is its own; with eval-mode BatchNorm the examples are
independent and the search runs on the shrinking set of examples still stepping, as the
code's does (frozen ones cost nothing more). :meth:`search` also returns the number of
steps each example took (a device tensor): FAT's BP count (Sec. 5.2, ``count`` in the code)
is their mean over the training set.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import ATTACKS
from ..errors import SpecError
from ..precision import varying_batch
from .pgd import PGD, Loss


@ATTACKS.register("pgd_es")
@dataclass(repr=False)
class PGDES(PGD):
    tau: int = 0
    omega: float = 0.0
    project: bool = True        # the field shadows PGD.project (the method): called as PGD.project below

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tau < 0:
            raise SpecError(f"tau must be ≥ 0, got {self.tau}")
        if self.restarts != 1:
            raise SpecError(f"pgd_es runs one search (restarts 1), got restarts={self.restarts}")
        if self.omega < 0:
            raise SpecError(f"omega must be ≥ 0, got {self.omega}")

    def search(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The friendly adversarial examples and the steps each example took (int64, device)."""
        with self.running():
            x_adv, steps = self._search(x.detach(), y, generator)
        return x_adv.detach(), steps

    def perturb(self, x, y, generator=None):
        return self._search(x.detach(), y, generator)[0]

    def _search(self, x, y, g):
        p_clean = None
        if self.loss is Loss.KL:
            with torch.no_grad():
                p_clean = F.softmax(self.model(x).float(), 1)
        x_adv = self.start(x, g)
        n = x.shape[0]
        counter = torch.full((n,), self.tau, device=x.device, dtype=torch.long)
        steps = torch.zeros(n, device=x.device, dtype=torch.long)
        idx = torch.arange(n, device=x.device)        # the examples still searching
        cur = x_adv                                   # their iterates
        for _ in range(self.steps):
            cur = cur.detach().requires_grad_(True)
            logits = self.model(cur if len(cur) == n else varying_batch(cur))
            y_i = y[idx]
            loss = self.objective(logits, y_i, None if p_clean is None else p_clean[idx]).sum()
            grad, = torch.autograd.grad(loss, cur)
            with torch.no_grad():
                wrong = logits.argmax(1) != y_i
                c = counter[idx]
                stop = wrong & (c == 0)
                counter[idx] = c - (wrong & ~stop).long()
                x_adv[idx[stop]] = cur[stop].detach()          # frozen at the iterate just checked
                go = ~stop
                idx, cur, grad = idx[go], cur.detach()[go], grad[go]
                if idx.numel() == 0:
                    break
                nxt = self.step(cur, grad)
                if self.omega:
                    nxt = nxt + self.omega * torch.randn(nxt.shape, device=nxt.device, generator=g)
                cur = PGD.project(self, nxt, x[idx]) if self.project else self.clamp(nxt)
                steps[idx] += 1
        with torch.no_grad():
            x_adv[idx] = cur.detach()
        return x_adv.detach(), steps
