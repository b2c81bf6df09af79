"""Batches from tensors kept on the device, with augmentation done there.

The whole split lives on the device as uint8; each batch is indexed, converted to
float in [0,1] and augmented (random crop with zero padding, horizontal flip) with
a generator seeded from (seed, epoch), so an epoch's batches are identical after a
resume. Nothing here synchronises with the host. :class:`MixedLoader` adds extra
(pseudo-labelled) images to every batch, for robust self-training.
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


def augmented(x: torch.Tensor, augment: str, pad: int, g: torch.Generator, channels_last: bool) -> torch.Tensor:
    """A uint8 (or float) batch as float in [0, 1], randomly cropped / flipped with ``g``."""
    x = to_float(x)
    if augment != "none":
        x = random_crop(x, pad, g)
        if augment == "crop_flip":
            x = random_flip(x, g)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


AUGMENTATIONS = ("none", "crop", "crop_flip")


class DeviceLoader:
    def __init__(self, split: Split, batch_size: int, device: torch.device, *, shuffle: bool = False,
                 augment: str = "none", pad: int = 4, channels_last: bool = False):
        if augment not in AUGMENTATIONS:
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
            yield augmented(self.x[idx], self.augment, self.pad, g, self.channels_last), self.y[idx]

    __iter__ = batches


class MixedLoader:
    """Training batches of robust self-training (Carmon et al., 2019): each batch holds
    ``batch_size − ⌊fraction·batch_size⌋`` labelled images and ``⌊fraction·batch_size⌋``
    extra (pseudo-labelled) ones, and an epoch is ⌈N/batch_size⌉ batches for N labelled
    images (their "pass through 50K datapoints" on CIFAR-10). As their sampler does, the
    labelled part walks a fresh permutation each epoch (continuing into another one if the
    epoch needs more), the extra part is drawn uniformly with replacement, and both are
    augmented alike. Everything stays on the device; the draws come from the (seed, epoch)
    generator, so a resumed epoch is the same."""

    def __init__(self, split: Split, extra: Split, batch_size: int, device: torch.device, *, fraction: float,
                 augment: str = "none", pad: int = 4, channels_last: bool = False):
        if augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {augment!r}")
        self.n_extra = int(batch_size * fraction)
        if not 0 < self.n_extra < batch_size or len(extra.y) == 0:
            raise ValueError(f"extra fraction {fraction} of batch {batch_size} leaves no labelled or no extra "
                             f"images per batch (extra set: {len(extra.y)} images)")
        self.x, self.y = split.x.to(device), split.y.to(device)
        self.x_extra, self.y_extra = extra.x.to(device), extra.y.to(device)
        self.batch_size, self.device, self.augment, self.pad = batch_size, device, augment, pad
        self.channels_last = channels_last
        self.n_base = batch_size - self.n_extra
        self.num_batches = -(-len(self.y) // batch_size)

    def __len__(self) -> int:
        return self.num_batches

    @property
    def n(self) -> int:
        return self.num_batches * self.batch_size

    def batches(self, seed: int = 0, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = epoch_generator(self.device, seed, epoch)
        need, size = self.num_batches * self.n_base, len(self.y)
        order = torch.cat([torch.randperm(size, device=self.device, generator=g)
                           for _ in range(-(-need // size))])[:need].view(self.num_batches, self.n_base)
        extra = torch.randint(0, len(self.y_extra), (self.num_batches, self.n_extra), device=self.device,
                              generator=g)
        for i, e in zip(order, extra):
            x = torch.cat([self.x[i], self.x_extra[e]])
            yield (augmented(x, self.augment, self.pad, g, self.channels_last),
                   torch.cat([self.y[i], self.y_extra[e]]))

    __iter__ = batches


def make_loader(data, split: str, batch_size: int, device: torch.device, *, shuffle: bool = False,
                augment: str = "none", channels_last: bool = False):
    """The loader a dataset asks for (``DatasetInfo.loader``), not the method: the device
    loader, or the streaming loader with decode workers (bench/data/stream.py) for
    ImageNet-sized data, whose training split gets the random resized crop and flip."""
    s = getattr(data, split)
    if data.info.loader == "stream":
        from .stream import StreamLoader

        mode = "train" if augment == "resized_crop_flip" else "resize_center_crop"
        return StreamLoader(s, batch_size, device, shuffle=shuffle, mode=mode, channels_last=channels_last)
    return DeviceLoader(s, batch_size, device, shuffle=shuffle, augment=augment, channels_last=channels_last)
