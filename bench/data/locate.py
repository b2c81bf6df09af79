"""Where a dataset's files, and the model checkpoints a spec evaluates without training,
are under the data root, checked without decoding anything (and without importing
torch), so missing data is reported before any job starts."""
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
    "imagenet_tv": lambda d: ((d / "meta.bin").is_file() and (d / "train").is_dir() and (d / "val").is_dir())
    or all((d / f).is_file() for f in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                                      "ILSVRC2012_devkit_t12.tar.gz")),
    "imagenet_folder": lambda d: (d / "train").is_dir() and (d / "val").is_dir(),
    "imagenetc_folder": lambda d: all((d / c / str(s)).is_dir() for c in CIFAR10C_CORRUPTIONS for s in range(1, 6)),
}
FILE_FORMATS = {"pseudo_pickle"}   # sources that are one file, not a folder


def data_root() -> Path:
    return Path(os.environ.get("BENCH_DATA", "data")).expanduser()


def present(fmt: str, path: Path) -> bool:
    if fmt in FILE_FORMATS:
        return path.is_file()
    return path.is_dir() and _PRESENT[fmt](path)


def locate(name: str, root: Path | None = None) -> tuple[Source, Path]:
    """The first source of ``name`` present under the data root, or a clear error."""
    info = DATASETS.get(name)
    root = data_root() if root is None else root
    if info.generator is not None:
        return Source("generated", "", True, "nothing: generated"), root
    for source in info.sources:
        if present(source.format, root / source.path):
            return source, root / source.path
    raise MissingDataError(_missing_dataset(info, root))


def _missing_dataset(info: DatasetInfo, root: Path) -> str:
    expected = "\n".join(f"    {root / s.expect}" + (f"  ({s.note})" if s.note else "") for s in info.sources)
    return (f"dataset {info.name!r} not found under the data root {root.resolve()} "
            f"(set BENCH_DATA to change it). Expected one of:\n{expected}\n"
            f"  To obtain it: {info.obtain}.")


# ---- model checkpoints a spec evaluates without training (bench/pretrained.py) ----------
# A requirement is named like a dataset in the plan ("robustbench:cifar10/Linf/<model id>"
# or "file:<path under the data root>"), so missing weights stop a run before any job starts.

ROBUSTBENCH_DIR = "robustbench"   # robustbench's own model_dir layout: <dataset>/<threat model>/<id>.pt


def checkpoint_requirement(pretrained: dict) -> str:
    if "robustbench" in pretrained:
        return f"robustbench:{pretrained['dataset']}/{pretrained['threat_model']}/{pretrained['robustbench']}"
    return f"file:{pretrained['file']}"


def checkpoint_path(requirement: str, root: Path | None = None) -> Path:
    root = data_root() if root is None else root
    kind, _, rest = requirement.partition(":")
    return root / ROBUSTBENCH_DIR / f"{rest}.pt" if kind == "robustbench" else root / rest


def _missing_checkpoint(requirement: str, root: Path) -> str:
    path = checkpoint_path(requirement, root)
    if requirement.startswith("robustbench:"):
        dataset, threat, model = requirement.partition(":")[2].split("/")
        how = (f"on a machine with internet access, `bench data download {requirement}` (robustbench's "
               f"load_model('{model}', model_dir='<data root>/{ROBUSTBENCH_DIR}', dataset='{dataset}', "
               f"threat_model='{threat}') fetches it), then copy it there")
    else:
        how = "place the checkpoint there (a state dict, or a dict with 'state_dict' or 'model')"
    return (f"model checkpoint {requirement!r} not found under the data root {root.resolve()} "
            f"(set BENCH_DATA to change it). Expected:\n    {path}\n  To obtain it: {how}.")


def is_checkpoint(name: str) -> bool:
    return name.startswith(("robustbench:", "file:"))


def missing_message(name: str, root: Path | None = None) -> str:
    """What is missing for ``name`` (a dataset or a checkpoint requirement) and how to get it."""
    root = data_root() if root is None else root
    return _missing_checkpoint(name, root) if is_checkpoint(name) else _missing_dataset(DATASETS.get(name), root)


def available(name: str, root: Path | None = None) -> bool:
    """Whether ``name`` (a dataset or a checkpoint requirement) is under the data root."""
    if is_checkpoint(name):
        return checkpoint_path(name, root).is_file()
    try:
        locate(name, root)
        return True
    except MissingDataError:
        return False
