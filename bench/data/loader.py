"""Batches from tensors kept on the device, with augmentation done there.

The whole split lives on the device as uint8; each batch is indexed, converted to
float in [0,1] and augmented (random crop with zero padding, horizontal flip) with
a generator seeded from (seed, epoch), so an epoch's batches are identical after a
resume. Nothing here synchronises with the host.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from .store import Split


def epoch_generator(device: torch.device, seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A generator whose state depends only on (seed, epoch, stream): resume-safe."""
    return torch.Generator(device=device).manual_seed(
        (seed * 1_000_003 + epoch * 7919 + stream * 104_729) % (2**63 - 1))


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images → float in [0, 1]; float data (vectors) unchanged."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def random_crop(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    i = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device, generator=g)
    j = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device, generator=g)
    rows = (i + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (j + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[batch, chan, rows, cols]


def random_flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device, generator=g) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class DeviceLoader:
    def __init__(self, split: Split, batch_size: int, device: torch.device, *, shuffle: bool = False,
                 augment: str = "none", pad: int = 4, channels_last: bool = False):
        if augment not in ("none", "crop", "crop_flip"):
            raise ValueError(f"unknown augmentation {augment!r}")
        self.x = split.x.to(device)
        self.y = split.y.to(device)
        self.batch_size, self.device = batch_size, device
        self.shuffle, self.augment, self.pad = shuffle, augment, pad
        self.channels_last = channels_last

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    @property
    def n(self) -> int:
        return len(self.y)

    def batches(self, seed: int = 0, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = epoch_generator(self.device, seed, epoch)
        order = (torch.randperm(self.n, device=self.device, generator=g) if self.shuffle
                 else torch.arange(self.n, device=self.device))
        for start in range(0, self.n, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = to_float(self.x[idx])
            if self.augment != "none":
                x = random_crop(x, self.pad, g)
                if self.augment == "crop_flip":
                    x = random_flip(x, g)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.y[idx]

    __iter__ = batches
