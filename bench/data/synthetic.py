"""Synthetic stand-ins for the smoke scale: the real shapes and class counts,
deterministic, learnable but not trivially robust (ℓ∞ attacks at 8/255 lower
accuracy), quantised to uint8 like real images so the whole pipeline is exercised."""
from __future__ import annotations

import zlib

import torch
import torch.nn.functional as F

from .catalog import DATASETS, DatasetInfo

SIGNAL = 0.3
CLUTTER = 0.05
NOISE = 0.1
SHIFT = 0.05     # per-image brightness shift
LAZY_TEMPLATES = 50_000_000   # template elements above which templates are upsampled per draw


def make(info: DatasetInfo, n_train: int, n_test: int):
    """Return ``(x_train, y_train, x_test, y_test)``; identical for identical arguments.
    Extra data for another dataset (``info.extends``) shares that dataset's class templates
    and draws its own images."""
    base = DATASETS.get(info.extends) if info.extends else info
    g = torch.Generator().manual_seed(zlib.crc32(base.name.encode()))
    c, h, w = info.shape
    k = info.num_classes
    coarse = torch.rand(k, c, 4, 4, generator=g) * 2 - 1
    if k * c * h * w <= LAZY_TEMPLATES:
        full = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        templates = lambda idx: full[idx]
    else:   # ImageNet's 1000 full-size templates would take 600 MB: upsample the ones drawn
        templates = lambda idx: F.interpolate(coarse[idx], size=(h, w), mode="bilinear", align_corners=False)
    if info.extends:
        g = torch.Generator().manual_seed(zlib.crc32(info.name.encode()))

    def sample(n: int):
        y = torch.arange(n) % k
        y = y[torch.randperm(n, generator=g)]
        other = torch.randint(0, k, (n,), generator=g)
        x = (0.5 + SIGNAL * templates(y) + CLUTTER * templates(other)
             + NOISE * torch.randn(n, c, h, w, generator=g)
             + SHIFT * torch.randn(n, 1, 1, 1, generator=g))
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    return x_train, y_train, x_test, y_test
