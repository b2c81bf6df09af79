"""Output-space margin and smoothness at an adversarial example (BAT: Kim, Lee, Lee & Lee,
2021, Eq. 4 and Sec. 3.1 / Fig. 2, Prop. 1 and Fig. 5, Sec. 5.3 / Eq. 7 and Fig. 8, App. B.1
and Fig. B.1).

What it measures, per test example (x, y), with p = softmax(f(x)), p* = softmax(f(x*)) and
x* the configured attack run on the evaluated model (eval-mode BatchNorm):
  M(x)  = p_y − max_{i≠y} p_i (Eq. 4; > 0 iff x is classified correctly), M(x*) likewise,
  KL(p ‖ p*) = Σ_i p_i (log p_i − log p*_i) (smoothness; Zhang et al. 2019),
  log α_y = log p_y − log p*_y and log α_t = log p_t − log p*_t with the target class
      t = argmax_{i≠y} p*_i (Fig. 5's caption; Prop. 1 writes t for the runner-up of the
      clean p, the figure the one of p*: the figure's definition is used).
Over the test set, the quadrants of Fig. 8 (Eq. 7, errors as Zhang et al. define them):
  natural error R_nat = P(argmax p ≠ y) (Quadrant III, and the rare Quadrant II),
  boundary error R_bdy = P(argmax p = y and argmax p* ≠ y) (Quadrant IV),
  robust error R_rob = R_nat + R_bdy = 1 − robust accuracy (Quadrant I holds the rest).

x* is what the attack returns (with restarts: the first restart that fools the model, else
the one with the highest loss), drawn with the generator stream the attack protocols use
(seed, stream 1), so with the same attack, seed and test subset x* is the very example the
attack protocol evaluates and ``robust`` equals its robust accuracy.

Arguments (defaults):
  attack (PGD-50 ℓ∞, ε=8/255, step 2/255, 10 restarts, uniform start, CE, eval-mode BN: the
      paper's evaluation attack, Sec. 5.4; protocols name it explicitly, and a setting's ε
      and the scale's attack overrides apply to it as to an attack protocol),
  threshold (0.9): the margin above which App. B.1 counts examples ("M(x) over 0.9").
Input range: [0, 1] (the attack clamps its iterates).
Result: n; percentages clean, robust, nat_error, bdy_error, rob_error, quadrant2 (misclassified
x whose x* is classified correctly), m_clean_above / m_adv_above (M(x) > threshold, M(x*) >
threshold), log_alpha_y_pos (log α_y > 0), log_alpha_t_neg (log α_t < 0); medians m_clean_median,
m_adv_median, kl_median, abs_log_alpha_y_median, abs_log_alpha_t_median and kl_mean; per example
m_clean, m_adv, kl, log_alpha_y, log_alpha_t (test order); threshold, the attack's resolved
parameters and the implementation (source hashes of this measure and the attack).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..attacks import ATTACKS, build as build_attack
from ..attacks.base import model_mode
from ..numbers import parse_number
from ..provenance import source_hash
from . import MEASURES
from .base import Measure

DEFAULT_ATTACK: dict[str, Any] = {"name": "pgd", "norm": "linf", "eps": "8/255", "step_size": "2/255",
                                  "steps": 50, "restarts": 10, "random_start": "uniform", "loss": "ce",
                                  "bn_mode": "eval"}
PER_EXAMPLE = ("m_clean", "m_adv", "kl", "log_alpha_y", "log_alpha_t")


def margin(log_p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """M = p_y − max_{i≠y} p_i per row of log-probabilities ``log_p`` (BAT Eq. 4)."""
    p = log_p.exp()
    p_y = p.gather(1, y[:, None]).squeeze(1)
    other = p.masked_fill(F.one_hot(y, p.shape[1]).bool(), float("-inf")).amax(1)
    return p_y - other


def output_margins(logits: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example M(x), M(x*), KL(p ‖ p*), log α_y, log α_t (t = argmax_{i≠y} p*_i) and the
    correctness of x and x*, from the logits at x and x* (computed in float64)."""
    log_p, log_q = F.log_softmax(logits.double(), 1), F.log_softmax(logits_adv.double(), 1)
    mask = F.one_hot(y, log_p.shape[1]).bool()
    t = log_q.masked_fill(mask, float("-inf")).argmax(1)
    log_alpha = log_p - log_q
    return {
        "m_clean": margin(log_p, y), "m_adv": margin(log_q, y),
        "kl": (log_p.exp() * log_alpha).sum(1),
        "log_alpha_y": log_alpha.gather(1, y[:, None]).squeeze(1),
        "log_alpha_t": log_alpha.gather(1, t[:, None]).squeeze(1),
        "correct": logits.argmax(1) == y, "correct_adv": logits_adv.argmax(1) == y,
    }


def quadrant_errors(correct: torch.Tensor, correct_adv: torch.Tensor) -> dict[str, float]:
    """Natural, boundary and robust error and Quadrant II (percent) from per-example
    correctness on x and x* (BAT Sec. 5.3, Eq. 7): R_nat = P(x wrong), R_bdy = P(x right,
    x* wrong), R_rob = R_nat + R_bdy; Quadrant II = P(x wrong, x* right)."""
    n = correct.numel()
    nat = (~correct).sum()
    bdy = (correct & ~correct_adv).sum()
    q2 = (~correct & correct_adv).sum()
    counts = torch.stack([nat, bdy, q2]).tolist()     # one host read
    nat_, bdy_, q2_ = (100.0 * c / n for c in counts)
    return {"nat_error": nat_, "bdy_error": bdy_, "rob_error": nat_ + bdy_, "quadrant2": q2_,
            "clean": 100.0 - nat_, "robust": 100.0 - nat_ - bdy_}


def _pct(mask: torch.Tensor) -> float:
    return 100.0 * mask.double().mean().item()


def _median(v: torch.Tensor) -> float:
    return torch.quantile(v, 0.5).item()


@MEASURES.register("output_margins")
class OutputMargins(Measure):
    """M(x), M(x*), KL(p ‖ p*) and log α per test example, and the quadrant errors (BAT
    Figs. 2, 5, 8, B.1)."""

    name = "output_margins"
    defaults = {"attack": DEFAULT_ATTACK, "threshold": 0.9}

    def evaluate(self, loader, seed: int = 0, progress=None) -> dict[str, Any]:
        from ..data.loader import epoch_generator

        attack = build_attack({"bn_mode": "eval", **self.attack}, self.model)
        g = epoch_generator(loader.device, seed, 0, stream=1)    # the attack protocols' stream
        parts: dict[str, list[torch.Tensor]] = {}
        for x, y in loader.batches():
            x_adv = attack(x, y, g)
            with model_mode(self.model, False), torch.no_grad():
                logits, logits_adv = self.model(x), self.model(x_adv)
            for key, value in output_margins(logits, logits_adv, y).items():
                parts.setdefault(key, []).append(value)
            if progress is not None:
                progress.update(1)
        v = {key: torch.cat(chunks) for key, chunks in parts.items()}
        threshold = parse_number(self.threshold)
        return {
            "n": loader.n, **quadrant_errors(v["correct"], v["correct_adv"]),
            "m_clean_above": _pct(v["m_clean"] > threshold), "m_adv_above": _pct(v["m_adv"] > threshold),
            "log_alpha_y_pos": _pct(v["log_alpha_y"] > 0), "log_alpha_t_neg": _pct(v["log_alpha_t"] < 0),
            "m_clean_median": _median(v["m_clean"]), "m_adv_median": _median(v["m_adv"]),
            "kl_median": _median(v["kl"]), "kl_mean": v["kl"].mean().item(),
            "abs_log_alpha_y_median": _median(v["log_alpha_y"].abs()),
            "abs_log_alpha_t_median": _median(v["log_alpha_t"].abs()),
            **{key: v[key].tolist() for key in PER_EXAMPLE},
            "threshold": threshold, "attack": {"name": self.attack["name"], **attack.params()},
            "implementation": f"bench.measures.output_margins (source {source_hash([MEASURES.source_file(self.name)])}) "
                              f"with x* from bench.attacks.{self.attack['name']} "
                              f"(source {source_hash([ATTACKS.source_file(self.attack['name'])])})",
        }
