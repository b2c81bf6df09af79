"""ResNet for CIFAR-sized inputs (He et al., 2016), as used by HAT for CIFAR-10/100.

Arguments: ``blocks`` per stage (ResNet-18: [2, 2, 2, 2]), base ``width`` (64; stages
use width·[1, 2, 4, 8]), ``num_classes``, ``in_channels``, optional ``mean``/``std``
for normalisation inside the model, ``head`` (HE's head, models/base.py). 3×3 stem without max-pooling; global average
pooling (identical to the usual 4×4 pooling at 32×32, and size-agnostic for 64×64).
Input range [0, 1].
"""
from __future__ import annotations

from torch import nn
import torch.nn.functional as F

from . import MODELS
from .base import Normalize, classifier


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


@MODELS.register("resnet")
class ResNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, blocks=(2, 2, 2, 2), width: int = 64,
                 mean=None, std=None, head=None):
        super().__init__()
        self.normalize = Normalize(mean, std, in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            for j in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.linear = classifier(cin, num_classes, head)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)
