"""Small CNN: the 8-layer network of FAT (Zhang et al., ICML 2020, Sec. 4.2: "6 convolutional
layers and 2 fully-connected layers"), as the authors' code defines it
(zjfheart/Friendly-Adversarial-Training, models/small_cnn.py; also TRADES' CIFAR-10 small CNN).

Three blocks of two 3×3 convolutions (padding 1, with bias), each followed by BatchNorm and
ReLU, and a 2×2 max-pool after each block; then fc1 (flattened 4·4 maps → 4·width) with ReLU
and fc2 (→ classes). No dropout. Module names are the code's (block1_conv1, batchnorm1_1, …,
fc1, fc2), so its checkpoints load as they are.
Arguments: ``width`` (64: channels 64, 128, 196 and 256 hidden units, 1,639,282 parameters for
10 classes; a smaller width scales every layer: round(w·[1, 2, 196/64]) channels and 4·w hidden
units, for the reduced scales), ``num_classes``, ``in_channels``, optional ``mean``/``std``.
Input: images in [0, 1], 32×32 as in the paper (CIFAR-10, SVHN); the last maps are
average-pooled to 4×4 before fc1, the identity at 32×32, so other sizes build too.
Numbered layers (FAT Figs. 3, 11): #1–#6 the six convolutions, each after its BatchNorm and
ReLU (before pooling); #7 fc1 after ReLU; #8 the logits (bench/measures/layer_embedding.py).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from . import MODELS
from .base import Normalize


@MODELS.register("small_cnn")
class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 64, mean=None, std=None):
        super().__init__()
        c1, c2, c3, hidden = width, 2 * width, round(width * 196 / 64), 4 * width
        self.normalize = Normalize(mean, std, in_channels)
        self.block1_conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.block1_conv2 = nn.Conv2d(c1, c1, 3, padding=1)
        self.block1_pool1 = nn.MaxPool2d(2, 2)
        self.batchnorm1_1 = nn.BatchNorm2d(c1)
        self.batchnorm1_2 = nn.BatchNorm2d(c1)
        self.block2_conv1 = nn.Conv2d(c1, c2, 3, padding=1)
        self.block2_conv2 = nn.Conv2d(c2, c2, 3, padding=1)
        self.block2_pool1 = nn.MaxPool2d(2, 2)
        self.batchnorm2_1 = nn.BatchNorm2d(c2)
        self.batchnorm2_2 = nn.BatchNorm2d(c2)
        self.block3_conv1 = nn.Conv2d(c2, c3, 3, padding=1)
        self.block3_conv2 = nn.Conv2d(c3, c3, 3, padding=1)
        self.block3_pool1 = nn.MaxPool2d(2, 2)
        self.batchnorm3_1 = nn.BatchNorm2d(c3)
        self.batchnorm3_2 = nn.BatchNorm2d(c3)
        self.activ = nn.ReLU()
        self.fc1 = nn.Linear(c3 * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = self.normalize(x)
        for b in (1, 2, 3):
            for k in (1, 2):
                x = self.activ(getattr(self, f"batchnorm{b}_{k}")(getattr(self, f"block{b}_conv{k}")(x)))
            x = getattr(self, f"block{b}_pool1")(x)
        x = self.activ(self.fc1(F.adaptive_avg_pool2d(x, 4).flatten(1)))   # 4×4 at 32×32: unchanged
        return self.fc2(x)
