"""Readers for the on-disk layouts named in :mod:`bench.data.catalog`.

Each reader takes the source directory (or file) and the dataset's catalog entry and
returns ``(x_train, y_train, x_test, y_test, verified)`` with images as uint8 tensors
``N×C×H×W`` and int64 labels. ``verified`` is True when the files' checksums match the
published originals.

No code from data files: a CIFAR pickle is unpickled only after its md5 matched the
original's; Carmon et al.'s pseudo-labelled pickle (no published checksum) is read with a
restricted unpickler that admits numpy arrays and plain containers only.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import MissingDataError
from .catalog import KNOWN_MD5, DatasetInfo, Source
from .locate import check_tinyimagenet, idx_dims, imagefolder_classes, images, md5_mismatches

Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, "bool | None"]


def verify(directory: Path, table: str) -> bool:
    return not md5_mismatches(Source("", table, True, ""), directory)


def _to_tensors(xtr, ytr, xte, yte):
    t = lambda a: torch.from_numpy(np.array(a, order="C"))  # a C-ordered, writable copy
    return t(xtr), t(ytr).long(), t(xte), t(yte).long()


def read_cifar_pickle(d: Path, info: DatasetInfo | None = None) -> Arrays:
    table = "cifar-10-batches-py" if (d / "test_batch").exists() else "cifar-100-python"
    bad = md5_mismatches(Source("cifar_pickle", table, True, ""), d)
    if bad:   # checked before unpickling: a pickle that is not the original could run code
        raise MissingDataError(f"{bad[0]}: refusing to unpickle it (a pickle that is not the original could "
                               f"run code); replace it with the original file"
                               + (f" ({len(bad) - 1} more file(s) differ)" if len(bad) > 1 else ""))

    def load(name: str):
        with open(d / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")   # the original file (md5 checked above)
        labels = entry.get("labels", entry.get("fine_labels"))
        return entry["data"].reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)

    if table == "cifar-10-batches-py":
        parts = [load(f"data_batch_{i}") for i in range(1, 6)]
        xtr, ytr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        xte, yte = load("test_batch")
    else:  # CIFAR-100 (fine labels)
        (xtr, ytr), (xte, yte) = load("train"), load("test")
    return (*_to_tensors(xtr, ytr, xte, yte), True)


def _read_idx(path: Path) -> np.ndarray:
    dims = idx_dims(path)   # header checked against the file size
    return np.frombuffer(path.read_bytes(), dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def read_mnist_idx(d: Path, info: DatasetInfo | None = None) -> Arrays:
    xtr = _read_idx(d / "train-images-idx3-ubyte")[:, None]
    ytr = _read_idx(d / "train-labels-idx1-ubyte").astype(np.int64)
    xte = _read_idx(d / "t10k-images-idx3-ubyte")[:, None]
    yte = _read_idx(d / "t10k-labels-idx1-ubyte").astype(np.int64)
    return (*_to_tensors(xtr, ytr, xte, yte), verify(d, "MNIST/raw"))


def read_svhn_mat(d: Path, info: DatasetInfo | None = None) -> Arrays:
    from scipy.io import loadmat

    def load(name: str):
        try:
            m = loadmat(d / name)
        except Exception as e:   # scipy raises several kinds for a damaged .mat
            raise MissingDataError(f"{d / name} cannot be read as a .mat file ({e}): replace it with the original") from None
        y = m["y"].astype(np.int64).reshape(-1)
        y[y == 10] = 0  # SVHN stores digit 0 as label 10
        return np.transpose(m["X"], (3, 2, 0, 1)), y

    (xtr, ytr), (xte, yte) = load("train_32x32.mat"), load("test_32x32.mat")
    return (*_to_tensors(xtr, ytr, xte, yte), verify(d, "svhn"))


def _decode(paths: list[Path]) -> np.ndarray:
    from PIL import Image

    def one(p: Path) -> np.ndarray:
        try:
            with Image.open(p) as im:
                a = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
        except (OSError, ValueError) as e:   # PIL: unidentified or truncated image
            raise MissingDataError(f"{p} cannot be decoded ({e}): replace or remove it") from None
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    return np.stack([one(p) for p in paths])


def read_imagefolder(d: Path, info: DatasetInfo) -> Arrays:
    classes = imagefolder_classes(d, info)   # exactly the dataset's classes, in label order

    def load(split: str):
        paths, labels = [], []
        for label, cls in enumerate(classes):
            files = images(d / split / cls)
            paths += files
            labels += [label] * len(files)
        return _decode(paths), np.asarray(labels, dtype=np.int64)

    (xtr, ytr), (xte, yte) = load("train"), load("test")
    return (*_to_tensors(xtr, ytr, xte, yte), None)


def read_tinyimagenet(d: Path, info: DatasetInfo) -> Arrays:
    check_tinyimagenet(d, info)
    wnids = (d / "wnids.txt").read_text().split()
    index = {w: i for i, w in enumerate(sorted(wnids))}
    paths, labels = [], []
    for w in sorted(wnids):
        files = images(d / "train" / w / "images")
        paths += files
        labels += [index[w]] * len(files)
    xtr, ytr = _decode(paths), np.asarray(labels, dtype=np.int64)
    val = [line.split("\t")[:2] for line in (d / "val" / "val_annotations.txt").read_text().splitlines() if line]
    val.sort()
    xte = _decode([d / "val" / "images" / name for name, _ in val])
    yte = np.asarray([index[w] for _, w in val], dtype=np.int64)
    return (*_to_tensors(xtr, ytr, xte, yte), None)


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, numpy scalars and plain containers (dict, list, tuple, str,
    numbers: pickle opcodes, no globals) and refuses every other global, so a pickle that
    is not what it claims cannot run code."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
               ("_codecs", "encode")}   # protocol 2 stores raw bytes as latin-1 text

    def find_class(self, module: str, name: str):
        canonical = module.replace("numpy.core.", "numpy._core.", 1)   # pickles written by numpy < 2
        if (canonical, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays and plain "
                                         f"containers are allowed)")
        if canonical != module and not hasattr(np, "_core"):   # numpy < 2 has numpy.core only
            canonical = module
        return super().find_class(canonical, name)


def read_pseudo_pickle(f: Path, info: DatasetInfo | None = None) -> Arrays:
    """Carmon et al. (2019)'s pseudo-labelled extra data: a pickle with ``data`` (N×32×32×3
    uint8) and ``extrapolated_targets`` (N labels). Training images only: the test split is empty.
    No checksum is published, so it is read with :class:`ArraysOnlyUnpickler`."""
    try:
        with open(f, "rb") as fh:
            aux = ArraysOnlyUnpickler(fh).load()
    except pickle.UnpicklingError as e:
        raise MissingDataError(f"{f}: {e}; this is not Carmon et al.'s file: replace it with the original") from None
    except (EOFError, ValueError) as e:
        raise MissingDataError(f"{f} is truncated or not a pickle ({e or type(e).__name__}): "
                               f"replace it with the original") from None
    if not isinstance(aux, dict) or not {"data", "extrapolated_targets"} <= set(aux):
        raise MissingDataError(f"{f}: expected a dict with 'data' and 'extrapolated_targets', "
                               f"got {type(aux).__name__}{' with keys ' + str(sorted(aux)) if isinstance(aux, dict) else ''}")
    x, y = np.asarray(aux["data"]), np.asarray(aux["extrapolated_targets"])
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3 or y.shape != (x.shape[0],):
        raise MissingDataError(f"{f}: 'data' is {x.dtype} {x.shape} and 'extrapolated_targets' {y.shape}; "
                               f"expected N×32×32×3 uint8 and N labels")
    x = x.transpose(0, 3, 1, 2)
    empty = np.zeros((0, *x.shape[1:]), dtype=np.uint8)
    return (*_to_tensors(x, y.astype(np.int64), empty, np.zeros(0, dtype=np.int64)), None)


READERS: dict[str, Callable[[Path, DatasetInfo], Arrays]] = {
    "cifar_pickle": read_cifar_pickle,
    "mnist_idx": read_mnist_idx,
    "svhn_mat": read_svhn_mat,
    "imagefolder": read_imagefolder,
    "tinyimagenet": read_tinyimagenet,
    "pseudo_pickle": read_pseudo_pickle,
}

__all__ = ["KNOWN_MD5", "READERS", "ArraysOnlyUnpickler", "verify"]
