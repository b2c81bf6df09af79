"""Readers for the on-disk layouts named in :mod:`bench.data.catalog`.

Each reader takes the source directory (or file) and returns ``(x_train, y_train, x_test,
y_test, verified)`` with images as uint8 tensors ``N×C×H×W`` and int64 labels.
``verified`` is True when the files' checksums match the published originals.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..fileio import file_digest

Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, "bool | None"]

# md5 of the original files (CIFAR/SVHN: as published with torchvision's loaders;
# MNIST: the uncompressed IDX files of the original release).
KNOWN_MD5 = {
    "cifar-10-batches-py": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    },
    "cifar-100-python": {
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    },
    "svhn": {
        "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    },
    "MNIST/raw": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
}

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".JPEG", ".JPG", ".PNG"}


def verify(directory: Path, table: str) -> bool:
    return all(file_digest(directory / name, "md5") == digest for name, digest in KNOWN_MD5[table].items())


def _to_tensors(xtr, ytr, xte, yte):
    t = lambda a: torch.from_numpy(np.array(a, order="C"))  # a C-ordered, writable copy
    return t(xtr), t(ytr).long(), t(xte), t(yte).long()


def read_cifar_pickle(d: Path) -> Arrays:
    def load(name: str):
        with open(d / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        labels = entry.get("labels", entry.get("fine_labels"))
        return entry["data"].reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)

    if (d / "test_batch").exists():  # CIFAR-10
        parts = [load(f"data_batch_{i}") for i in range(1, 6)]
        xtr, ytr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        xte, yte = load("test_batch")
        table = "cifar-10-batches-py"
    else:  # CIFAR-100 (fine labels)
        (xtr, ytr), (xte, yte) = load("train"), load("test")
        table = "cifar-100-python"
    return (*_to_tensors(xtr, ytr, xte, yte), verify(d, table))


def _read_idx(path: Path) -> np.ndarray:
    data = path.read_bytes()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_mnist_idx(d: Path) -> Arrays:
    xtr = _read_idx(d / "train-images-idx3-ubyte")[:, None]
    ytr = _read_idx(d / "train-labels-idx1-ubyte").astype(np.int64)
    xte = _read_idx(d / "t10k-images-idx3-ubyte")[:, None]
    yte = _read_idx(d / "t10k-labels-idx1-ubyte").astype(np.int64)
    return (*_to_tensors(xtr, ytr, xte, yte), verify(d, "MNIST/raw"))


def read_svhn_mat(d: Path) -> Arrays:
    from scipy.io import loadmat

    def load(name: str):
        m = loadmat(d / name)
        y = m["y"].astype(np.int64).reshape(-1)
        y[y == 10] = 0  # SVHN stores digit 0 as label 10
        return np.transpose(m["X"], (3, 2, 0, 1)), y

    (xtr, ytr), (xte, yte) = load("train_32x32.mat"), load("test_32x32.mat")
    return (*_to_tensors(xtr, ytr, xte, yte), verify(d, "svhn"))


def _decode(paths: list[Path]) -> np.ndarray:
    from PIL import Image

    def one(p: Path) -> np.ndarray:
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    return np.stack([one(p) for p in paths])


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in IMAGE_SUFFIXES)


def read_imagefolder(d: Path) -> Arrays:
    classes = sorted(p.name for p in (d / "train").iterdir() if p.is_dir())

    def load(split: str):
        paths, labels = [], []
        for label, cls in enumerate(classes):
            files = _images(d / split / cls)
            paths += files
            labels += [label] * len(files)
        return _decode(paths), np.asarray(labels, dtype=np.int64)

    (xtr, ytr), (xte, yte) = load("train"), load("test")
    return (*_to_tensors(xtr, ytr, xte, yte), None)


def read_tinyimagenet(d: Path) -> Arrays:
    wnids = (d / "wnids.txt").read_text().split()
    index = {w: i for i, w in enumerate(sorted(wnids))}
    paths, labels = [], []
    for w in sorted(wnids):
        files = _images(d / "train" / w / "images")
        paths += files
        labels += [index[w]] * len(files)
    xtr, ytr = _decode(paths), np.asarray(labels, dtype=np.int64)
    val = [line.split("\t")[:2] for line in (d / "val" / "val_annotations.txt").read_text().splitlines() if line]
    val.sort()
    xte = _decode([d / "val" / "images" / name for name, _ in val])
    yte = np.asarray([index[w] for _, w in val], dtype=np.int64)
    return (*_to_tensors(xtr, ytr, xte, yte), None)


def read_pseudo_pickle(f: Path) -> Arrays:
    """Carmon et al. (2019)'s pseudo-labelled extra data: a pickle with ``data`` (N×32×32×3
    uint8) and ``extrapolated_targets`` (N labels). Training images only: the test split is empty."""
    with open(f, "rb") as fh:
        aux = pickle.load(fh)
    x = np.asarray(aux["data"], dtype=np.uint8).transpose(0, 3, 1, 2)
    y = np.asarray(aux["extrapolated_targets"], dtype=np.int64)
    empty = np.zeros((0, *x.shape[1:]), dtype=np.uint8)
    return (*_to_tensors(x, y, empty, np.zeros(0, dtype=np.int64)), None)


READERS: dict[str, Callable[[Path], Arrays]] = {
    "cifar_pickle": read_cifar_pickle,
    "mnist_idx": read_mnist_idx,
    "svhn_mat": read_svhn_mat,
    "imagefolder": read_imagefolder,
    "tinyimagenet": read_tinyimagenet,
    "pseudo_pickle": read_pseudo_pickle,
}
