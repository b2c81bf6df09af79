"""Pre-activation ResNet (He et al., 2016, "Identity mappings"), as used by HAT for
SVHN and Tiny-ImageNet-200 and by Rice et al. (2020).

Arguments: ``blocks`` per stage (PreAct ResNet-18: [2, 2, 2, 2]), base ``width`` (64),
``num_classes``, ``in_channels``, optional ``mean``/``std``, ``head`` (HE's head, models/base.py). Global average pooling
after the final BN-ReLU, so 32×32 and 64×64 inputs share the code. Input range [0, 1].
"""
from __future__ import annotations

from torch import nn
import torch.nn.functional as F

from . import MODELS
from .base import Normalize, classifier


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


@MODELS.register("preact_resnet")
class PreActResNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, blocks=(2, 2, 2, 2), width: int = 64,
                 mean=None, std=None, head=None):
        super().__init__()
        self.normalize = Normalize(mean, std, in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        layers, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            for j in range(n):
                layers.append(PreActBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.linear = classifier(cin, num_classes, head)

    def forward(self, x):
        out = self.layers(self.conv1(self.normalize(x)))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)
