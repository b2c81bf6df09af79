"""Locate, decode, cache, subset and fingerprint datasets.

A dataset is decoded once into uint8 tensors and cached under
``$BENCH_CACHE/data`` (default ``results/cache/data``); every later job loads the
cache. The fingerprint (name, source, exactness, sizes, sha256 of the decoded
pixels and labels) travels with every result so a substitute can never pass for
the original.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..errors import MissingDataError, SpecError
from ..fileio import torch_save
from . import readers, synthetic
from .catalog import DATASETS, DatasetInfo, Source
from .locate import locate

SUBSET_SEED = 0  # reduced scales take the first n of a fixed permutation of each split


def cache_root() -> Path:
    return Path(os.environ.get("BENCH_CACHE", "results/cache")).expanduser()


@dataclass
class Split:
    x: torch.Tensor  # uint8 images N×C×H×W (read as /255), or float vectors N×d
    y: torch.Tensor  # int64, N


@dataclass
class Loaded:
    info: DatasetInfo
    train: Split
    test: Split
    fingerprint: dict


def _listing_key(directory: Path) -> str:
    h = hashlib.sha1(str(directory.resolve()).encode())
    if directory.is_file():   # a one-file source (the extra data's pickle)
        st = directory.stat()
        h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for f in sorted(filenames):
            st = os.stat(os.path.join(dirpath, f))
            h.update(f"{os.path.relpath(dirpath, directory)}/{f}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def content_hash(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def _decode_cached(info: DatasetInfo, source: Source, directory: Path) -> dict:
    path = cache_root() / "data" / info.name / f"{source.format}-{_listing_key(directory)}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    xtr, ytr, xte, yte, verified = readers.READERS[source.format](directory)
    if xtr.shape[1:] != torch.Size(info.shape) or xte.shape[1:] != torch.Size(info.shape):
        raise MissingDataError(f"{directory}: images have shape {tuple(xtr.shape[1:])}, "
                               f"expected {info.shape} for {info.name}")
    entry = dict(x_train=xtr, y_train=ytr, x_test=xte, y_test=yte,
                 sha256=content_hash(xtr, ytr, xte, yte), verified=verified)
    torch_save(path, entry)
    return entry


def _subset(split: Split, n: int | None, salt: int) -> tuple[Split, str | None]:
    if n is None or n >= len(split.y):
        return split, None
    g = torch.Generator().manual_seed(SUBSET_SEED + salt)
    idx = torch.randperm(len(split.y), generator=g)[:n].sort().values
    return Split(split.x[idx], split.y[idx]), hashlib.sha256(idx.numpy().tobytes()).hexdigest()[:16]


def _only(x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples of ``classes`` only, relabelled 0…k−1 in the order given."""
    keep = torch.isin(y, torch.tensor(classes))
    relabel = torch.full((max(classes) + 1,), -1, dtype=torch.long)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))
    return x[keep], relabel[y[keep]]


def load(name: str, *, source: str = "real", synthetic_size: tuple[int, int] = (512, 256),
         n_train: int | None = None, n_test: int | None = None, classes: list[int] | None = None) -> Loaded:
    """Load ``name`` from the data root (``source='real'``) or generate it
    (``source='synthetic'``, with ``synthetic_size`` train/test images), then keep
    the first ``n_train``/``n_test`` of a fixed permutation of each split."""
    info = DATASETS.get(name)
    if info.generator is not None:  # defined by its paper: the same at every scale
        from .generated import GENERATORS

        xtr, ytr, xte, yte = GENERATORS[info.generator](info, info.n_train, info.n_test)
        fp = dict(source=f"generated:{info.generator}", exact=True, sha256=content_hash(xtr, ytr, xte, yte),
                  note=info.obtain)
    elif source == "synthetic":
        xtr, ytr, xte, yte = synthetic.make(info, *synthetic_size)
        fp = dict(source="synthetic", exact=False, sha256=content_hash(xtr, ytr, xte, yte),
                  note="synthetic stand-in with the real shape and class count (smoke scale)")
    elif source == "real":
        src, directory = locate(name)
        entry = _decode_cached(info, src, directory)
        xtr, ytr, xte, yte = (entry[k].contiguous() for k in ("x_train", "y_train", "x_test", "y_test"))
        if src.exact:
            exact = bool(entry["verified"])
            note = "" if exact else "checksums differ from the original files: not the original"
        else:
            exact, note = src.exact, src.note or "no published checksums: unverified"
        fp = dict(source=f"{src.format}:{src.path}", exact=exact, note=note, sha256=entry["sha256"])
    else:
        raise MissingDataError(f"unknown data source {source!r} (expected 'real' or 'synthetic')")
    if classes:   # a class subset, relabelled 0…k−1 in the order given (FAT Fig. 3: bird, deer)
        if len(set(classes)) != len(classes) or not all(0 <= c < info.num_classes for c in classes):
            raise SpecError(f"{name}: classes must be distinct labels in 0..{info.num_classes - 1}, "
                                   f"got {classes}")
        (xtr, ytr), (xte, yte) = _only(xtr, ytr, classes), _only(xte, yte, classes)
        info = replace(info, num_classes=len(classes))
        fp["classes"] = list(classes)
    train, train_idx = _subset(Split(xtr, ytr), n_train, 0)
    test, test_idx = _subset(Split(xte, yte), n_test, 1)
    fp.update(dataset=name, full_train=len(ytr), full_test=len(yte), n_train=len(train.y),
              n_test=len(test.y), train_subset=train_idx, test_subset=test_idx)
    return Loaded(info, train, test, fp)


def load_for_run(cfg: dict, n_test: int | None = None) -> Loaded:
    """The data of a planned run: its dataset, source and training subset, and ``n_test``
    test images."""
    d = cfg["data"]
    return load(cfg["dataset"], source=d["source"], synthetic_size=tuple(d.get("synthetic_size", (512, 256))),
                n_train=d.get("n_train"), n_test=n_test, classes=d.get("classes"))


def load_extra(cfg: dict) -> Loaded | None:
    """A planned run's extra training data (``data.extra``: robust self-training), ``n`` of it
    (all when None; at the synthetic scale, ``n`` generated images), or None."""
    d = cfg["data"]
    extra = d.get("extra")
    if not extra:
        return None
    return load(extra["dataset"], source=d["source"], synthetic_size=(extra["n"] or 0, 0), n_train=extra["n"])


def current_fingerprint(cfg: dict) -> dict:
    """The fingerprint of a planned run's dataset as the data root (or the generator) gives
    it now, to check results against: a render refuses runs made on other data."""
    return load_for_run(cfg, n_test=0).fingerprint
