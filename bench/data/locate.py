"""Where a dataset's files are under the data root, checked without decoding anything
(and without importing torch), so missing data is reported before any job starts."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import MissingDataError
from .catalog import CIFAR10C_CORRUPTIONS, DATASETS, DatasetInfo, Source

_PRESENT = {
    "cifar_pickle": lambda d: (d / "test_batch").exists() or (d / "test").is_file(),
    "mnist_idx": lambda d: (d / "t10k-images-idx3-ubyte").exists(),
    "svhn_mat": lambda d: (d / "test_32x32.mat").exists(),
    "tinyimagenet": lambda d: (d / "val" / "val_annotations.txt").exists(),
    "imagefolder": lambda d: (d / "train").is_dir() and (d / "test").is_dir(),
    "cifar10c_npy": lambda d: all((d / f"{c}.npy").is_file() for c in ("labels", *CIFAR10C_CORRUPTIONS)),
}


def data_root() -> Path:
    return Path(os.environ.get("BENCH_DATA", "data")).expanduser()


def present(fmt: str, directory: Path) -> bool:
    return directory.is_dir() and _PRESENT[fmt](directory)


def locate(name: str, root: Path | None = None) -> tuple[Source, Path]:
    """The first source of ``name`` present under the data root, or a clear error."""
    info = DATASETS.get(name)
    root = data_root() if root is None else root
    if info.generator is not None:
        return Source("generated", "", True, "nothing: generated"), root
    for source in info.sources:
        if present(source.format, root / source.path):
            return source, root / source.path
    raise MissingDataError(missing_message(info, root))


def missing_message(info: DatasetInfo, root: Path) -> str:
    expected = "\n".join(f"    {root / s.expect}" + (f"  ({s.note})" if s.note else "") for s in info.sources)
    return (f"dataset {info.name!r} not found under the data root {root.resolve()} "
            f"(set BENCH_DATA to change it). Expected one of:\n{expected}\n"
            f"  To obtain it: {info.obtain}.")


def available(name: str, root: Path | None = None) -> bool:
    try:
        locate(name, root)
        return True
    except MissingDataError:
        return False
