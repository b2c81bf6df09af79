"""Datasets too large for the device, streamed from their image files: ImageNet (ILSVRC2012)
and ImageNet-C (HE, Pang et al., NeurIPS 2020: Tables 4, 5, 12, Fig. 2 right).

A split is a :class:`FileSplit`: the sorted relative paths ``<class>/<image>`` under a split
folder and their labels (class = the index of its folder name among the sorted class
folders: ImageNet's wnid order, as torchvision's ``ImageNet`` and ``ImageFolder`` number
them). Nothing is decoded to fingerprint it: the fingerprint hashes the manifest (relative
path, byte size and label of every file) and the bytes of a fixed sample of 1,000 files,
and is cached per folder listing.

:class:`StreamLoader` gives batches behind the device loader's small interface
(``batches(seed, epoch)``, ``len``, ``n``, ``batch_size``, ``device``): a torch ``DataLoader``
with ``BENCH_WORKERS`` decode workers (default: up to 16 for files, none for in-memory
images), PIL decoding and the standard crops (HE App. C.2: "RandomResizedCrop and
RandomHorizontalFlip in training; Resize and CenterCrop in test. The image size is 256 and
the crop size is 224"). The order is a permutation drawn from (seed, epoch) and each image's
crop and flip from (seed, epoch, position), so an epoch's batches do not depend on the
number of workers and repeat after a resume. The same loader serves in-memory uint8 images
(the synthetic stand-in of the smoke scale), so the ImageNet pipeline runs end to end there.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from .locate import IMAGE_SUFFIXES

SAMPLE_FILES = 1000
CROP, RESIZE = 224, 256
MODES = ("train", "resize_center_crop", "center_crop")


@dataclass
class FileSplit:
    """Image files ``root/<files[i]>`` with labels ``y`` (int64)."""
    root: Path
    files: list[str]
    y: torch.Tensor
    sizes: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, idx: torch.Tensor) -> "FileSplit":
        i = idx.tolist()
        return FileSplit(self.root, [self.files[k] for k in i], self.y[idx],
                         [self.sizes[k] for k in i] if self.sizes else [])


def class_folders(directory: Path) -> list[str]:
    return sorted(p.name for p in Path(directory).iterdir() if p.is_dir())


def _listing_key(directory: Path) -> str:
    """Changes when a class folder gains or loses files (its mtime) or is renamed."""
    h = hashlib.sha1(str(Path(directory).resolve()).encode())
    for c in class_folders(directory):
        h.update(f"{c}:{(Path(directory) / c).stat().st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def scan(directory: Path, classes: list[str] | None = None) -> FileSplit:
    """The manifest of an ImageFolder split (``<class>/<image>``), cached per listing."""
    from ..layout import cache_root

    directory = Path(directory)
    classes = class_folders(directory) if classes is None else classes
    cache = cache_root() / "data" / "manifests" / f"{_listing_key(directory)}.json"
    if cache.exists():
        entry = json.loads(cache.read_text())
    else:
        files, labels, sizes = [], [], []
        for label, c in enumerate(classes):
            folder = directory / c
            if not folder.is_dir():
                continue
            with os.scandir(folder) as it:
                found = sorted((e.name, e.stat().st_size) for e in it if e.is_file()
                               and Path(e.name).suffix in IMAGE_SUFFIXES)
            files += [f"{c}/{n}" for n, _ in found]
            sizes += [s for _, s in found]
            labels += [label] * len(found)
        entry = {"files": files, "labels": labels, "sizes": sizes}
        from ..fileio import write_text

        write_text(cache, json.dumps(entry))
    return FileSplit(directory, entry["files"], torch.tensor(entry["labels"], dtype=torch.long), entry["sizes"])


def fingerprint(splits: dict[str, FileSplit]) -> dict:
    """sha256 of the manifests (path, size, label per file) and of a fixed sample of the files' bytes."""
    h = hashlib.sha256()
    for name, s in sorted(splits.items()):
        h.update(name.encode())
        for f, size, y in zip(s.files, s.sizes or [0] * len(s), s.y.tolist()):
            h.update(f"{f}\t{size}\t{y}\n".encode())
    manifest = h.hexdigest()
    everything = [(s.root, f) for _, s in sorted(splits.items()) for f in s.files]
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(everything), generator=g)[:SAMPLE_FILES].sort().values.tolist() if everything else []
    hs = hashlib.sha256()
    for i in pick:
        root, f = everything[i]
        hs.update((Path(root) / f).read_bytes())
    sample = hs.hexdigest()
    return {"sha256": hashlib.sha256(f"{manifest}:{sample}".encode()).hexdigest(), "manifest_sha256": manifest,
            "sample_sha256": sample, "sample_files": len(pick), "files": len(everything)}


def imagenet_splits(source_format: str, directory: Path) -> tuple[FileSplit, FileSplit, bool]:
    """(train, val, extracted_here) of ImageNet under ``directory``: torchvision's layout
    (its archives, parsed and md5-verified by ``torchvision.datasets.ImageNet`` on first use,
    into ``train/<wnid>`` and ``val/<wnid>``) or a plain ImageFolder tree with the same folders."""
    extracted = False
    if source_format == "imagenet_tv" and not ((directory / "train").is_dir() and (directory / "val").is_dir()):
        from torchvision.datasets import ImageNet

        for split in ("train", "val"):
            ImageNet(str(directory), split=split)   # extracts and checks the archives' md5
        extracted = True
    classes = class_folders(directory / "train")
    return scan(directory / "train", classes), scan(directory / "val", classes), extracted


# ---- batches --------------------------------------------------------------------------------

def _transform(mode: str):
    from torchvision import transforms as T

    if mode == "train":
        return T.Compose([T.RandomResizedCrop(CROP), T.RandomHorizontalFlip()])
    if mode == "resize_center_crop":
        return T.Compose([T.Resize(RESIZE), T.CenterCrop(CROP)])
    return T.CenterCrop(CROP)


class _Images(torch.utils.data.Dataset):
    """Decoded, cropped uint8 C×H×W images in a given order, each with its own seed."""

    def __init__(self, split, order: list[int], mode: str, seed: int):
        self.split, self.order, self.mode, self.seed = split, order, mode, seed
        self.tf = _transform(mode)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, pos: int):
        from PIL import Image
        from torchvision.transforms.functional import pil_to_tensor, to_pil_image

        i = self.order[pos]
        if isinstance(self.split, FileSplit):
            with Image.open(self.split.root / self.split.files[i]) as im:
                img = im.convert("RGB")
        else:   # in-memory uint8 images (the synthetic stand-in)
            img = to_pil_image(self.split.x[i])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + pos * 7919) % (2 ** 63 - 1))
            img = self.tf(img)
        return pil_to_tensor(img), self.split.y[i]


def workers(split) -> int:
    default = min(16, os.cpu_count() or 1) if isinstance(split, FileSplit) else 0
    return int(os.environ.get("BENCH_WORKERS", default))


class StreamLoader:
    """Batches of decoded images (float in [0, 1] on ``device``) from a :class:`FileSplit` or
    an in-memory split, with ``mode`` "train" (random resized crop and flip) or a test crop."""

    def __init__(self, split, batch_size: int, device: torch.device, *, shuffle: bool = False,
                 mode: str = "resize_center_crop", channels_last: bool = False):
        if mode not in MODES:
            raise ValueError(f"unknown stream mode {mode!r}; known: {MODES}")
        self.split, self.batch_size, self.device = split, batch_size, device
        self.shuffle, self.mode, self.channels_last = shuffle, mode, channels_last

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    @property
    def n(self) -> int:
        return len(self.split.y)

    def batches(self, seed: int = 0, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        key = (seed * 1_000_003 + epoch * 7919) % (2 ** 63 - 1)
        order = (torch.randperm(self.n, generator=torch.Generator().manual_seed(key)).tolist() if self.shuffle
                 else list(range(self.n)))
        n_workers = workers(self.split)
        loader = torch.utils.data.DataLoader(_Images(self.split, order, self.mode, key), batch_size=self.batch_size,
                                             shuffle=False, num_workers=n_workers,
                                             pin_memory=self.device.type == "cuda",
                                             prefetch_factor=4 if n_workers else None)
        for x, y in loader:
            x = x.to(self.device, non_blocking=True).float().div_(255)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)

    __iter__ = batches
