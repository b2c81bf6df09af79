"""Wide ResNet (Zagoruyko & Komodakis, 2016) for CIFAR-sized inputs: WRN-depth-widen.

Arguments: ``depth`` (6n+4: 28, 34, …; 10 for the reduced scales), ``widen`` (k),
``dropout`` (0), ``num_classes``, ``in_channels``, optional ``mean``/``std``, ``init``
("torch": PyTorch's default initialisation; "he_fanout": the TRADES / FAT / MART code's,
conv weights N(0, 2/(k²·out_channels)), BatchNorm γ = 1, β = 0, linear bias 0), ``head`` (HE's head, models/base.py).
Stages of 16·k, 32·k, 64·k channels with pre-activation basic blocks. Input range [0, 1].
"""
from __future__ import annotations

import math

from torch import nn
import torch.nn.functional as F

from . import MODELS
from .base import Normalize, classifier


class WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.equal = cin == cout and stride == 1
        self.shortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = x if self.equal else self.shortcut(out)
        out = F.relu(self.bn2(self.conv1(out)))
        if self.dropout:
            out = F.dropout(out, self.dropout, self.training)
        return self.conv2(out) + shortcut


@MODELS.register("wide_resnet")
class WideResNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, depth: int = 34, widen: int = 10,
                 dropout: float = 0.0, mean=None, std=None, head=None, init: str = "torch"):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.normalize = Normalize(mean, std, in_channels)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers, cin = [], widths[0]
        for i, cout in enumerate(widths[1:]):
            for j in range(n):
                layers.append(WideBlock(cin, cout, 2 if (i > 0 and j == 0) else 1, dropout))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.linear = classifier(cin, num_classes, head)
        if init == "he_fanout":
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight), nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
        elif init != "torch":
            raise ValueError(f"WideResNet init must be 'torch' or 'he_fanout', got {init!r}")

    def forward(self, x):
        out = self.layers(self.conv1(self.normalize(x)))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)
