"""Standard training: cross-entropy on clean examples.

Parameters: none. No training attack. Inputs in [0, 1].
"""
from __future__ import annotations

import torch.nn.functional as F

from . import METHODS
from .base import Method, accuracy


@METHODS.register("standard")
class Standard(Method):
    name = "standard"

    def loss(self, x, y, generator=None):
        logits = self.logits(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": loss.detach(), "clean_acc": accuracy(logits, y)}
