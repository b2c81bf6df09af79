"""ResNet for CIFAR-sized inputs (He et al., 2016), as used by HAT for CIFAR-10/100.

Arguments: ``blocks`` per stage (ResNet-18: [2, 2, 2, 2]), base ``width`` (64; stages
use width·[1, 2, 4, 8]), ``block`` ("basic" | "bottleneck": 1×1 → 3×3 (stride) → 1×1 with
expansion 4, as kuangliu/pytorch-cifar's ResNet-50/101 that DRA trains), ``num_classes``,
``in_channels``, optional ``mean``/``std`` for normalisation inside the model, ``head`` (HE's
head, models/base.py). 3×3 stem
without max-pooling; global average pooling (identical to the usual 4×4 pooling at 32×32, and size-agnostic for 64×64).
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


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        cout = self.expansion * planes
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


@MODELS.register("resnet")
class ResNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, blocks=(2, 2, 2, 2), width: int = 64,
                 mean=None, std=None, head=None, block: str = "basic"):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"resnet block must be one of {sorted(BLOCKS)}, got {block!r}")
        unit = BLOCKS[block]
        self.normalize = Normalize(mean, std, in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for i, n in enumerate(blocks):
            planes = width * 2 ** i
            for j in range(n):
                layers.append(unit(cin, planes, 2 if (i > 0 and j == 0) else 1))
                cin = planes * getattr(unit, "expansion", 1)
        self.layers = nn.Sequential(*layers)
        self.linear = classifier(cin, num_classes, head)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)
