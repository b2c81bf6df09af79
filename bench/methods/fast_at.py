"""FastAT: "fast is better than free" adversarial training (Wong, Rice & Kolter, ICLR 2020),
FGSM from a random start; with HE's head FastAT+HE / m-HE (Pang et al., NeurIPS 2020, Table 3).

Objective: CE(f(x + δ), y), δ from one FGSM step of size α from δ₀ ~ U(−ε, ε) (the attack
``fgsm_rs``); with HE's head (s, m; bench/models/base.py) L^m_CE = CE(s·(cos θ − m·1_y), y),
the FGSM step on CE(s·cos θ, y). HE publishes no FastAT+HE code: the HE form is PGD-AT+HE's
(Table 1, AT_HE's code) with FastAT's attack.
Parameters: none. Training attack conventions (``fast_adversarial/CIFAR10/train_fgsm.py``):
α = 10/255, the attack's forward in train mode (its code never switches to eval: the
attack's pass also moves BatchNorm's running statistics). Inputs in [0, 1].
"""
from __future__ import annotations

from . import METHODS
from .pgd_at import PGDAT


@METHODS.register("fast_at")
class FastAT(PGDAT):
    name = "fast_at"
    attack_name = "fgsm_rs"
    attack_defaults = {"alpha": "10/255", "bn_mode": "train"}
    formulas = {
        "plain": {"train": "CE(f(x*), y)", "adversarial": "CE(f(x′), y): one FGSM step from U(−ε, ε)",
                  "train_here": "CE(f(x*), y)", "adversarial_here": "CE(f(x′), y), FGSM from U(−ε, ε), step α"},
        "he": {"train": "CEᵐ(f̃(x*), y) (as PGD-AT+HE)", "adversarial": "CE(f̃(x′), y) (as PGD-AT+HE)",
               "train_here": "CE({s}·(cos θ* − {m}·1_y), y)",
               "adversarial_here": "CE({s}·cos θ′, y), FGSM from U(−ε, ε), step α"},
    }
