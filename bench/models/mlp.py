"""Multi-layer perceptron for vector inputs (HAT's toy problem, App. A: one hidden layer
of 25 ReLU units).

Arguments: ``hidden`` (25) units per hidden layer, ``depth`` (1) hidden layers,
``num_classes``, ``in_channels`` (the input dimension). Inputs are unbounded vectors.
"""
from __future__ import annotations

from torch import nn

from . import MODELS


@MODELS.register("mlp")
class MLP(nn.Sequential):
    def __init__(self, num_classes: int = 2, in_channels: int = 3, hidden: int = 25, depth: int = 1):
        layers, width = [], in_channels
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        super().__init__(*layers, nn.Linear(width, num_classes))
