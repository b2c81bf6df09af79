"""DeepFool ℓ∞ (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016) through foolbox, as TRADES
evaluated it and HE (Pang et al., NeurIPS 2020, Table 2 "DeepFool", App. B.2) follows:
"we used the foolbox library with its defaulted hyperparameters" (TRADES issues #14, #18).

Threat model ℓ∞, inputs in [0, 1], model in eval mode: foolbox 3's ``LinfDeepFoolAttack``
(the maintained release; TRADES ran foolbox 2's ``DeepFoolLinfinityAttack``, whose overshoot
is applied per step rather than to the accumulated perturbation) linearises the classifier
around the iterate and steps to the nearest linearised boundary among the ``candidates``
top classes, at most ``steps`` times, stopping once adversarial ("maximum number of
iterations as 100 in DeepFool, and it will early stop", App. B.2). It is a minimal-
perturbation attack: an example counts as broken iff foolbox's perturbation, clipped to the
ε-ball (foolbox's own criterion at ``epsilons=ε``), is misclassified.
Arguments (defaults): eps ("8/255"), steps (100), candidates (10), overshoot (0.02),
loss ("logits" | "crossentropy"), bn_mode ("eval" only). The foolbox version is recorded
with every result.
"""
from __future__ import annotations

from dataclasses import dataclass


from . import ATTACKS
from ..errors import SpecError
from .base import Attack, check_budget, model_mode, number


def foolbox_model(model, device):
    import foolbox

    return foolbox.PyTorchModel(model, bounds=(0, 1), device=device)


def foolbox_version() -> str:
    import foolbox

    return f"foolbox {foolbox.__version__}"


@ATTACKS.register("deepfool")
@dataclass(repr=False)
class DeepFool(Attack):
    eps: float | str = "8/255"
    steps: int = 100
    candidates: int = 10
    overshoot: float | str = 0.02
    loss: str = "logits"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.eps = number(self.eps)
        check_budget(self.eps, None, True, (0.0, 1.0))
        if self.bn_mode.value != "eval" or self.loss not in ("logits", "crossentropy") or self.steps < 1:
            raise SpecError("deepfool: bn_mode eval, loss logits or crossentropy, steps ≥ 1")

    def perturb(self, x, y, generator=None):
        from foolbox.attacks import LinfDeepFoolAttack

        attack = LinfDeepFoolAttack(steps=self.steps, candidates=self.candidates, overshoot=self.overshoot,
                                    loss=self.loss)
        with model_mode(self.model, False):
            _, clipped, _ = attack(foolbox_model(self.model, x.device), x.contiguous(), y, epsilons=self.eps)
        return clipped.detach().clamp(0, 1)

    def evaluate(self, loader, seed: int = 0, progress=None):
        return {**super().evaluate(loader, seed, progress), "implementation": foolbox_version()}
