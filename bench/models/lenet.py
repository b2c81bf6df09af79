"""LeNet for MNIST, as BAT (Kim et al., 2021) trains it: "LeNet (LeCun et al., 1998)".

The paper names LeNet without giving its layers or size. This is the LeNet of the BAT
author's own libraries (Harry24k/adversarial-defenses-pytorch
``torchdefenses/utils/models/lenet.py``, identical in Harry24k/MAIR
``mair/utils/models/lenet.py``), the library the paper's code lives in:
conv 5×5 (32) → ReLU → max-pool 2 → conv 5×5 (64) → ReLU → max-pool 2 → flatten
(64·4·4 at 28×28) → linear 1024 → ReLU → linear ``num_classes``; no padding, no
BatchNorm, no dropout. 1,111,946 parameters for 1×28×28 inputs and 10 classes.

Arguments: ``num_classes``, ``in_channels`` (1 for MNIST), ``width`` (32; the second
convolution has 2·width channels), ``hidden`` (1024), ``head`` (HE's head, models/base.py), optional ``mean``/``std`` (none by
default: the paper uses no preprocessing). For inputs other than 28×28 the 4×4 feature
map is obtained by adaptive average pooling (the identity at 28×28), so the family also
builds for the other datasets' shapes. Input range [0, 1].
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from . import MODELS
from .base import Normalize, classifier


@MODELS.register("lenet")
class LeNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32, hidden: int = 1024,
                 mean=None, std=None, head=None):
        super().__init__()
        self.normalize = Normalize(mean, std, in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 5)
        self.conv2 = nn.Conv2d(width, 2 * width, 5)
        self.fc1 = nn.Linear(2 * width * 4 * 4, hidden)
        self.fc2 = classifier(hidden, num_classes, head)

    def forward(self, x):
        out = F.max_pool2d(F.relu(self.conv1(self.normalize(x))), 2)
        out = F.max_pool2d(F.relu(self.conv2(out)), 2)
        if out.shape[-2:] != (4, 4):
            out = F.adaptive_avg_pool2d(out, 4)
        out = F.relu(self.fc1(out.flatten(1)))
        return self.fc2(out)
