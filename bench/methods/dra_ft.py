"""DRA adversarial fine-tuning (Hou, Zhou, Han, Musilek & Li, IJCNN 2022, §IV.A and §V.A).

A clean-data pre-trained model (the recipe's ``init``: another row's run) is fine-tuned, all
layers, on clean and adversarial batches in a 1:1 "replay" to prevent catastrophic forgetting:
"let the network iteratively update upon clean and adversarial samples". The adversary is DRA
(bench/attacks/dra.py) by default; a recipe naming another attack (PGD for Table V's
"ours + PGD") gets none of the DRA defaults. The ε schedule and the clean-only tail are data in
the recipe (``epoch_schedules``: ``attack.eps`` ramps, ``method.adversarial`` switches the
adversarial half off), so the training loop knows nothing of them.

Objective: CE(f(x), y) and CE(f(x*), y), x* = attack(f, x, y); how the two meet (``replay``):
  alternate_steps (default): per batch an optimiser step on CE(f(x), y), then x* from the
      updated model, then a step on CE(f(x*), y); two updates per batch (``updates_per_batch``),
      so the lr schedule counts both;
  alternate_batches: even batches of an epoch clean, odd batches adversarial, one update each
      (half the images seen adversarially);
  joint: one update on CE(f(x), y) + CE(f(x*), y), x* from the model before the step (the
      λ = 1 reading of Eq. (8)).
With ``adversarial: false`` (the clean tail) every batch takes one clean step. Statistics:
loss (clean and adversarial losses summed for the batch), clean_loss, clean_acc, adv_loss,
adv_acc (with alternate_batches each kind's epoch mean is over its half of the batches). Inputs in [0, 1]; the attack runs in eval mode.

Parameters (defaults): replay ("alternate_steps"), adversarial (True).
Note: with ``alternate_steps`` the lr schedule is built for two updates per batch; the clean
tail takes one, so a per-step schedule (piecewise, cosine) counts the tail's steps at half
speed. The paper's lr is not stated; the suite's choice is a constant lr, which this does not touch.
"""
from __future__ import annotations

import torch.nn.functional as F

from . import METHODS
from .base import Method, accuracy

REPLAYS = ("alternate_steps", "alternate_batches", "joint")


@METHODS.register("dra_ft")
class DRAFineTune(Method):
    name = "dra_ft"
    attack_name = "dra"
    attack_defaults = {"bn_mode": "eval"}
    defaults = {"replay": "alternate_steps", "adversarial": True}
    choices = {"replay": REPLAYS}

    def __init__(self, model, attack=None, helpers=None, **params):
        super().__init__(model, attack, helpers, **params)
        self.batch = 0   # index of the batch in the epoch (alternate_batches), reset by begin_epoch

    @property
    def updates_per_batch(self) -> int:
        return 2 if self.replay == "alternate_steps" else 1

    def begin_epoch(self, epoch, values):
        super().begin_epoch(epoch, values)
        self.batch = 0

    def _ce(self, x, y):
        with self.autocast():
            logits = self.logits(x)
            return F.cross_entropy(logits, y), logits

    def train_step(self, x, y, generator, update):
        adversarial = self.adversarial and (self.replay != "alternate_batches" or self.batch % 2 == 1)
        self.batch += 1
        if not adversarial or self.replay == "alternate_batches":
            x_in = self.attack(x, y, generator) if adversarial else x
            loss, logits = self._ce(x_in, y)
            update({"adversarial" if adversarial else "clean": loss}, x_in, y)
            key = "adv" if adversarial else "clean"
            # alternate_batches: each kind is half of the batches; ×2 makes the epoch means its own
            w = 2.0 if self.replay == "alternate_batches" and self.adversarial else 1.0
            return {"loss": loss.detach(), f"{key}_loss": w * loss.detach(), f"{key}_acc": w * accuracy(logits, y)}
        if self.replay == "joint":
            x_adv = self.attack(x, y, generator)
            clean, logits = self._ce(x, y)
            adv, logits_adv = self._ce(x_adv, y)
            update({"clean": clean, "adversarial": adv}, x, y)
        else:   # alternate_steps: the clean step, then DRA on the updated model, then its step
            clean, logits = self._ce(x, y)
            update({"clean": clean}, x, y)
            x_adv = self.attack(x, y, generator)
            adv, logits_adv = self._ce(x_adv, y)
            update({"adversarial": adv}, x_adv, y)
        return {"loss": (clean + adv).detach(), "clean_loss": clean.detach(), "adv_loss": adv.detach(),
                "clean_acc": accuracy(logits, y), "adv_acc": accuracy(logits_adv, y)}

    def objective(self, x, y, generator=None):
        """The joint objective CE(f(x), y) + CE(f(x*), y) (probes and the default loop read it)."""
        x_adv = self.attack(x, y, generator)
        logits, logits_adv = self.logits(x), self.logits(x_adv)
        terms = {"clean": F.cross_entropy(logits, y), "adversarial": F.cross_entropy(logits_adv, y)}
        return terms, {"clean_acc": accuracy(logits, y), "adv_acc": accuracy(logits_adv, y)}
