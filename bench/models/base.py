"""Shared pieces of the model files: optional input normalisation inside the model
(inputs are always in [0,1]; where a paper normalises, the model does it)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None, channels: int):
        super().__init__()
        self.enabled = mean is not None
        mean = mean if mean is not None else [0.0] * channels
        std = std if std is not None else [1.0] * channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std if self.enabled else x
