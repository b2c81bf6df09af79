"""PGD whose objective applies feature normalisation (FN) to the attacked model's
penultimate feature (Pang et al., "Boosting Adversarial Training with Hypersphere
Embedding", NeurIPS 2020, Sec. 3.3 Eq. 12 and Sec. 4.4 / Table 7: "attacking standardly
trained WRN-34-10 with or without FN").

Threat model ℓ∞ (or ℓ2), inputs in [0, 1]: PGD (bench/attacks/pgd.py: start, sign steps,
projection, clamping) on CE(f̄(x′), y) with f̄(x′) = Wᵀz̃′ + b, z̃′ = z′/‖z′‖₂ the normalised
input of the model's final linear layer (models/base.py's ``embed``); the model's own
prediction is unchanged (the FN only enters the attack's loss).
Arguments (defaults): those of pgd (eps 8/255, step_size 2/255, steps 10, uniform start,
loss ce, …; restarts 1 only), and
  fn_bias (True): keep the classifier's bias b in f̄. Eq. 12 writes f̄(x) = S(Wᵀz̃) without b;
      Table 7 attacks a standard model that has one, and b does not depend on x, so the
      default keeps it (false drops it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import ATTACKS
from ..errors import SpecError
from ..models.base import embed, final_layer
from .pgd import PGD


@ATTACKS.register("pgd_fn")
@dataclass(repr=False)
class PGDFN(PGD):
    fn_bias: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.restarts != 1:
            raise SpecError(f"pgd_fn: restarts must be 1 (its loss is not the model's output), got {self.restarts}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, _ = embed(self.model, x)
        layer = final_layer(self.model)
        return F.linear(F.normalize(z.float(), dim=1), layer.weight.float(),
                        layer.bias.float() if self.fn_bias and layer.bias is not None else None)
