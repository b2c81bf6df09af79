"""Locate, decode, cache, subset and fingerprint datasets.

A dataset is decoded once into uint8 tensors and cached under
``$BENCH_CACHE/data`` (default ``results/cache/data``); every later job loads the
cache, verified: its tensors' sha256 is recomputed and must equal the one stored with
them, and their shapes and labels must fit the dataset; a truncated, corrupt or altered
cache is rebuilt from the source files (one warning line on stderr), never trusted. One
job decodes at a time (a lock on the cache folder), and stale temporaries are removed.
The fingerprint (name, source, exactness, sizes, sha256 of the decoded
pixels and labels) travels with every result so a substitute can never pass for
the original.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..errors import CorruptFileError, MissingDataError, SpecError
from ..fileio import locked, torch_load, torch_save
from ..layout import cache_root
from . import readers, synthetic
from .catalog import DATASETS, DatasetInfo, Source
from .locate import locate

SUBSET_SEED = 0  # reduced scales take the first n of a fixed permutation of each split


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
    """Which cache file belongs to these source files (path, names, sizes, mtimes); the
    cache's content is verified separately, on every load."""
    h = hashlib.sha1(str(directory.resolve()).encode())
    if directory.is_file():   # a one-file source (the extra data's pickle)
        st = directory.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for f in sorted(filenames):
            st = os.stat(os.path.join(dirpath, f))
            h.update(f"{os.path.relpath(dirpath, directory)}/{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def content_hash(*tensors: torch.Tensor) -> str:
    """sha256 of the tensors' shapes and bytes (about 0.25 s for CIFAR-10's 180 MB)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().data)
    return h.hexdigest()


SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
CACHE_WAIT = 3600.0   # seconds a job waits for another one decoding the same dataset


def _problem(info: DatasetInfo, entry: object) -> str | None:
    """What is wrong with decoded data (a cache entry or a reader's output), or None."""
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), torch.Tensor) for k in SPLIT_KEYS):
        return "is incomplete"
    for split in ("train", "test"):
        x, y = entry[f"x_{split}"], entry[f"y_{split}"]
        if x.shape[1:] != torch.Size(info.shape) or y.shape != (len(x),) or y.dtype != torch.int64:
            return f"has {split} images of shape {tuple(x.shape)} and labels {tuple(y.shape)}, expected N×{info.shape}"
        if len(y) and not 0 <= int(y.min()) <= int(y.max()) < info.num_classes:
            return f"has {split} labels outside 0..{info.num_classes - 1}"
    return None


def _read_cache(path: Path, info: DatasetInfo) -> tuple[dict | None, str]:
    """The cache entry at ``path`` if intact (readable, right shapes, its content hash
    recomputed and equal to the stored one), else (None, what is wrong)."""
    try:
        entry = torch_load(path, weights_only=True)
    except CorruptFileError:
        return None, "cannot be read (truncated or corrupt)"
    problem = _problem(info, entry)
    if problem is None and entry.get("sha256") != content_hash(*(entry[k] for k in SPLIT_KEYS)):
        problem = "does not match its content hash"
    return (None, problem) if problem else (entry, "")


def _decode_cached(info: DatasetInfo, source: Source, directory: Path) -> dict:
    path = cache_root() / "data" / info.name / f"{source.format}-{_listing_key(directory)}.pt"
    with locked(path.parent, wait=CACHE_WAIT):   # one decoder at a time; stale temporaries removed
        if path.exists():
            entry, problem = _read_cache(path, info)
            if entry is not None:
                return entry
            print(f"bench: warning: decoded-data cache {path} {problem}: rebuilding it from {directory}",
                  file=sys.stderr, flush=True)
        try:
            xtr, ytr, xte, yte, verified = readers.READERS[source.format](directory, info)
        except (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as e:
            raise MissingDataError(f"{directory} cannot be read ({type(e).__name__}: {e}); "
                                   f"`bench data check {info.name}` names the bad file(s)") from None
        entry = dict(x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, verified=verified)
        problem = _problem(info, entry)
        if problem:
            raise MissingDataError(f"{directory}: the decoded {info.name} {problem}")
        entry["sha256"] = content_hash(xtr, ytr, xte, yte)
        torch_save(path, entry)
    return entry


def _subset(split, n: int | None, salt: int, first: bool = False) -> tuple["Split", str | None]:
    """The first ``n`` of a fixed permutation of the split (or, with ``first``, its first
    ``n`` in file order), and a short id of the chosen indices. A streamed split (a file
    manifest) subsets itself."""
    if n is None or n >= len(split.y):
        return split, None
    if first:
        idx = torch.arange(n)
    else:
        g = torch.Generator().manual_seed(SUBSET_SEED + salt)
        idx = torch.randperm(len(split.y), generator=g)[:n].sort().values
    sub = split.subset(idx) if hasattr(split, "subset") else Split(split.x[idx], split.y[idx])
    return sub, hashlib.sha256(idx.numpy().tobytes()).hexdigest()[:16]


def _only(x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples of ``classes`` only, relabelled 0…k−1 in the order given."""
    keep = torch.isin(y, torch.tensor(classes))
    relabel = torch.full((max(classes) + 1,), -1, dtype=torch.long)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))
    return x[keep], relabel[y[keep]]


def load(name: str, *, source: str = "real", synthetic_size: tuple[int, int] = (512, 256),
         n_train: int | None = None, n_test: int | None = None, test_subset: str = "random",
         classes: list[int] | None = None) -> Loaded:
    """Load ``name`` from the data root (``source='real'``) or generate it
    (``source='synthetic'``, with ``synthetic_size`` train/test images), then keep
    the first ``n_train``/``n_test`` of a fixed permutation of each split (``test_subset
    ='first'``: the first ``n_test`` test images in file order, e.g. "the first test batch";
    an ImageFolder tree, grouped by class, has lost that order and keeps the fixed random
    subset; the fingerprint's ``test_subset_rule`` says which was taken)."""
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
    elif source == "real" and info.loader == "stream":   # too large to decode: files streamed per batch
        return _load_files(info, *locate(name), n_train, n_test)
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
    if test_subset not in ("random", "first"):
        raise MissingDataError(f"unknown test subset {test_subset!r} (expected 'random' or 'first')")
    if test_subset == "first" and source == "real" and src.format == "imagefolder":
        test_subset = "random"   # its files are grouped by class: the original order is lost
    test, test_idx = _subset(Split(xte, yte), n_test, 1, first=test_subset == "first")
    fp.update(dataset=name, full_train=len(ytr), full_test=len(yte), n_train=len(train.y),
              n_test=len(test.y), train_subset=train_idx, test_subset=test_idx)
    if test_idx is not None:
        fp["test_subset_rule"] = test_subset
    return Loaded(info, train, test, fp)


def _load_files(info: DatasetInfo, src: Source, directory: Path, n_train: int | None, n_test: int | None) -> Loaded:
    """A streamed dataset (bench/data/stream.py): its file manifests, subset like a decoded
    one, fingerprinted without decoding (manifest and a fixed sample of the files' bytes)."""
    from . import stream

    train, test, extracted = stream.imagenet_splits(src.format, directory)
    fp = dict(source=f"{src.format}:{src.path}", exact=src.exact,
              note=src.note + ("; extracted (and md5-checked) by torchvision in this job" if extracted else ""),
              **stream.fingerprint({"train": train, "test": test}))
    full_train, full_test = len(train), len(test)
    train, train_idx = _subset(train, n_train, 0)
    test, test_idx = _subset(test, n_test, 1)
    fp.update(dataset=info.name, full_train=full_train, full_test=full_test, n_train=len(train.y),
              n_test=len(test.y), train_subset=train_idx, test_subset=test_idx)
    return Loaded(info, train, test, fp)


def load_for_run(cfg: dict, n_test: int | None = None, test_subset: str = "random") -> Loaded:
    """The data of a planned run: its dataset, source and training subset, and ``n_test``
    test images (``test_subset``: see :func:`load`)."""
    d = cfg["data"]
    return load(cfg["dataset"], source=d["source"], synthetic_size=tuple(d.get("synthetic_size", (512, 256))),
                n_train=d.get("n_train"), n_test=n_test, test_subset=test_subset, classes=d.get("classes"))


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
