"""The small MNIST CNN of the TRADES code, "2 convolutional layers and 2 fully connected
layers" (DRA, Hou et al., IJCNN 2022, §V.A: "we follow the TRADES study and use a simple CNN").

conv 5×5 (c1) → ReLU → max-pool 2 → conv 5×5 (c2) [→ Dropout2d] → ReLU → max-pool 2 → flatten
(c2·4·4 at 28×28) → linear ``hidden`` → ReLU [→ dropout] → linear ``num_classes``; no padding,
no BatchNorm (ReLU and max-pooling commute, so the order of the two does not matter). Aliases:
  trades_example_net (c1 20, c2 50, hidden 500, no dropout; 431,080 parameters): yaodongyu/TRADES
      ``mnist_example_trades.py::Net`` (its log_softmax output leaves the CE unchanged);
  trades_net_mnist (c1 10, c2 20, hidden 50, dropout 0.5; 21,840 parameters): TRADES
      ``models/net_mnist.py::Net``, the 10-class twin of the paper's binary-MNIST network.
Arguments: ``num_classes``, ``in_channels`` (1), ``c1`` (20), ``c2`` (50), ``hidden`` (500),
``dropout`` (0.0), optional ``mean``/``std`` (none by default). Other input sizes reach the 4×4
map by adaptive average pooling (the identity at 28×28). Input range [0, 1].
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from . import MODELS
from .base import Normalize


@MODELS.register("mnist_cnn")
class MNISTCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, c1: int = 20, c2: int = 50, hidden: int = 500,
                 dropout: float = 0.0, mean=None, std=None):
        super().__init__()
        self.normalize = Normalize(mean, std, in_channels)
        self.conv1 = nn.Conv2d(in_channels, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.drop2d = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.fc1 = nn.Linear(c2 * 4 * 4, hidden)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        out = F.max_pool2d(F.relu(self.conv1(self.normalize(x))), 2)
        out = F.max_pool2d(F.relu(self.drop2d(self.conv2(out))), 2)
        if out.shape[-2:] != (4, 4):
            out = F.adaptive_avg_pool2d(out, 4)
        out = self.drop(F.relu(self.fc1(out.flatten(1))))
        return self.fc2(out)
