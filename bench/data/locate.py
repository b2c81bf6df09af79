"""Where a dataset's files, and the model checkpoints a spec evaluates without training,
are under the data root, checked without decoding anything (and without importing
torch), so missing data is reported before any job starts.

Two levels, one helper each:

* presence (:func:`required`, :func:`locate`, :func:`available`): every file a source's
  reader will open exists. Cheap (``stat`` calls only): used at plan time.
* soundness (:func:`check`, ``bench data check``): every one of those files is what its
  format needs — IDX headers agree with the file sizes, CIFAR pickles have the original md5
  (others are never unpickled), class folders are exactly the dataset's classes and none is
  empty, .npy headers agree with the sizes, .mat files hold X and y. The readers use the
  same helpers (:func:`idx_dims`, :func:`md5_mismatches`, :func:`imagefolder_classes`,
  :func:`check_tinyimagenet`).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import MissingDataError
from .catalog import CIFAR10C_CORRUPTIONS, DATASETS, KNOWN_MD5, DatasetInfo, Source

FILE_FORMATS = {"pseudo_pickle"}   # sources that are one file, not a folder
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".JPEG", ".JPG", ".PNG"}
SPLITS = ("train", "test")


def data_root() -> Path:
    return Path(os.environ.get("BENCH_DATA", "data")).expanduser()


def required(source: Source, path: Path, info: DatasetInfo) -> list[Path]:
    """Every file (or folder) the reader of ``source`` at ``path`` opens."""
    fmt = source.format
    if fmt in ("cifar_pickle", "mnist_idx", "svhn_mat"):
        return [path / name for name in KNOWN_MD5[source.path]]
    if fmt == "imagefolder":
        return [path / s for s in SPLITS] + [path / s / c for s in SPLITS for c in info.classes or ()]
    if fmt == "tinyimagenet":
        return [path / "wnids.txt", path / "train", path / "val" / "images", path / "val" / "val_annotations.txt"]
    if fmt == "cifar10c_npy":
        return [path / f"{c}.npy" for c in ("labels", *CIFAR10C_CORRUPTIONS)]
    if fmt == "imagenet_tv":   # torchvision's ImageNet: extracted (meta.bin, train/, val/) or its three archives
        if (path / "meta.bin").exists():
            return [path / "meta.bin", path / "train", path / "val"]
        return [path / f for f in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz")]
    if fmt == "imagenet_folder":
        return [path / "train", path / "val"]
    if fmt == "imagenetc_folder":
        return [path / c / str(s) for c in CIFAR10C_CORRUPTIONS for s in range(1, 6)]
    if fmt in FILE_FORMATS:
        return [path]
    raise ValueError(f"unknown data format {fmt!r}")


def absent(source: Source, path: Path, info: DatasetInfo) -> list[Path]:
    return [p for p in required(source, path, info) if not p.exists()]


def locate(name: str, root: Path | None = None) -> tuple[Source, Path]:
    """The first source of ``name`` whose files are all present under the data root, or a clear error."""
    info = DATASETS.get(name)
    root = data_root() if root is None else root
    if info.generator is not None:
        return Source("generated", "", True, "nothing: generated"), root
    for source in info.sources:
        if not absent(source, root / source.path, info):
            return source, root / source.path
    raise MissingDataError(_missing_dataset(info, root))


def _missing_dataset(info: DatasetInfo, root: Path) -> str:
    lines = []
    for s in info.sources:
        lines.append(f"    {root / s.expect}" + (f"  ({s.note})" if s.note else ""))
        if (root / s.path).exists():   # there, but incomplete: name what is missing
            missing = absent(s, root / s.path, info)
            lines.append(f"      {root / s.path} is there but lacks: "
                         + ", ".join(str(p.relative_to(root / s.path)) or p.name for p in missing[:12])
                         + (f" (and {len(missing) - 12} more)" if len(missing) > 12 else ""))
    expected = "\n".join(lines)
    return (f"dataset {info.name!r} not found under the data root {root.resolve()} "
            f"(set BENCH_DATA to change it). Expected one of:\n{expected}\n"
            f"  To obtain it: {info.obtain}.")


# ---- soundness: what `bench data check` reports and the readers refuse ------------------

def idx_dims(path: Path) -> list[int]:
    """The dimensions in an IDX file's header (unsigned-byte data), checked against the
    file's size: a truncated or foreign file is a MissingDataError naming it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:3] != b"\x00\x00\x08" or not 1 <= head[3] <= 4:
            raise MissingDataError(f"{path} is not an IDX file of unsigned bytes (header {head.hex()}): "
                                   f"replace it with the original")
        ndim = head[3]
        raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise MissingDataError(f"{path} is truncated (header incomplete): replace it with the original")
    dims = [int.from_bytes(raw[4 * i: 4 * i + 4], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + _prod(dims)
    if size != expected:
        raise MissingDataError(f"{path} has {size} bytes but its header {dims} needs {expected}: "
                               f"{'truncated' if size < expected else 'trailing data'}; replace it with the original")
    return dims


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def md5_mismatches(source: Source, path: Path) -> list[str]:
    """The files of a source with published md5s whose md5 differs, each as a message."""
    from ..fileio import file_digest

    out = []
    for name, digest in KNOWN_MD5[source.path].items():
        got = file_digest(path / name, "md5")
        if got != digest:
            out.append(f"{path / name}: md5 {got} differs from the original's ({digest})")
    return out


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in IMAGE_SUFFIXES)


def imagefolder_classes(path: Path, info: DatasetInfo) -> list[str]:
    """The class folders of an ImageFolder tree in label order, checked: exactly the dataset's
    classes (or, where their names are not known, ``num_classes`` folders), the same in train
    and test, none without images; otherwise a MissingDataError naming each bad folder."""
    problems = []
    found = {}
    for split in SPLITS:
        d = path / split
        found[split] = sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []
        if not d.is_dir():
            problems.append(f"{d}: missing")
        elif info.classes is not None and found[split] != sorted(info.classes):
            missing = [c for c in info.classes if c not in found[split]]
            extra = [c for c in found[split] if c not in info.classes]
            problems.append(f"{d}: " + "; ".join(
                ([f"missing class folder(s) {', '.join(missing)}"] if missing else [])
                + ([f"unexpected folder(s) {', '.join(extra)}"] if extra else []))
                + f" (expected exactly {info.name}'s {info.num_classes} classes: {' '.join(info.classes)})")
        elif info.classes is None and len(found[split]) != info.num_classes:
            problems.append(f"{d}: {len(found[split])} class folders, expected {info.num_classes} ({info.name})")
    if not problems and found["train"] != found["test"]:
        only = lambda a, b: ", ".join(sorted(set(found[a]) - set(found[b]))) or "none"
        problems.append(f"{path}: train and test have different class folders "
                        f"(only in train: {only('train', 'test')}; only in test: {only('test', 'train')})")
    if not problems:
        problems += [f"{path / s / c}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                     for s in SPLITS for c in found[s] if not images(path / s / c)]
    if problems:
        raise MissingDataError("; ".join(problems))
    return list(info.classes) if info.classes is not None else found["train"]


def _check_npy(path: Path, shape: tuple[int, ...] | None = None, rows: tuple[int, ...] = ()) -> None:
    import numpy as np

    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            got, _, dtype = read_header(f)
        except (ValueError, OSError) as e:
            raise MissingDataError(f"{path} is not a .npy file ({e}): replace it with the original") from None
        offset = f.tell()
    need = offset + _prod(got) * dtype.itemsize
    if os.path.getsize(path) < need:
        raise MissingDataError(f"{path} is truncated ({os.path.getsize(path)} of {need} bytes): "
                               f"replace it with the original")
    if (shape is not None and (got[1:] != shape or dtype != np.uint8 or got[0] % 5)) or (rows and got not in rows):
        raise MissingDataError(f"{path} has shape {got} and dtype {dtype}, not CIFAR-10-C's")


def check(source: Source, path: Path, info: DatasetInfo) -> tuple[list[str], list[str]]:
    """Every file the reader of ``source`` will read, checked without decoding the data:
    (problems that stop it being read, notes). Its files must be present (:func:`locate`)."""
    problems: list[str] = []
    notes: list[str] = []

    def attempt(fn, *args):
        try:
            return fn(*args)
        except MissingDataError as e:
            problems.append(str(e))
        except OSError as e:
            problems.append(f"{getattr(e, 'filename', None) or path}: {e.strerror or e}")

    fmt = source.format
    if fmt == "cifar_pickle":   # a pickle that is not the original is never unpickled
        problems += [f"{m}: it will not be unpickled (a pickle that is not the original could run code); "
                     f"replace it with the original" for m in attempt(md5_mismatches, source, path) or []]
    elif fmt == "mnist_idx":
        dims = {n: attempt(idx_dims, path / n) for n in KNOWN_MD5[source.path]}
        for split in ("train", "t10k"):
            x, y = dims[f"{split}-images-idx3-ubyte"], dims[f"{split}-labels-idx1-ubyte"]
            if x and y and x[0] != y[0]:
                problems.append(f"{path}: {split} has {x[0]} images but {y[0]} labels")
        if not problems and attempt(md5_mismatches, source, path):
            notes.append("checksums differ from the original files: read as not the original")
    elif fmt == "svhn_mat":
        from scipy.io import whosmat

        for name in KNOWN_MD5[source.path]:
            try:
                shapes = {v: s for v, s, _ in whosmat(path / name)}
            except Exception as e:   # scipy raises several kinds for a damaged .mat
                problems.append(f"{path / name} cannot be read as a .mat file ({e}): replace it with the original")
                continue
            if len(shapes.get("X", ())) != 4 or shapes["X"][:3] != (32, 32, 3) or shapes.get("y") != (shapes["X"][3], 1):
                problems.append(f"{path / name}: holds {shapes}, expected X 32×32×3×N and y N×1")
        if not problems and attempt(md5_mismatches, source, path):
            notes.append("checksums differ from the original files: read as not the original")
    elif fmt == "imagefolder":
        attempt(imagefolder_classes, path, info)
    elif fmt == "tinyimagenet":
        attempt(check_tinyimagenet, path, info)
    elif fmt == "cifar10c_npy":
        attempt(_check_npy, path / "labels.npy", None, ((50000,), (10000,)))
        for c in CIFAR10C_CORRUPTIONS:
            attempt(_check_npy, path / f"{c}.npy", (32, 32, 3))
    elif fmt in FILE_FORMATS:
        if path.stat().st_size == 0:
            problems.append(f"{path} is empty")
        notes.append("no published checksum: read with a restricted unpickler (numpy arrays and plain containers only)")
    return problems, notes


def check_tinyimagenet(path: Path, info: DatasetInfo) -> None:
    """Tiny-ImageNet's original layout: ``num_classes`` wnids, each with training images,
    and validation annotations naming existing images of known wnids (MissingDataError)."""
    wnids = (path / "wnids.txt").read_text().split()
    problems = [] if len(set(wnids)) == info.num_classes else [
        f"{path / 'wnids.txt'}: {len(set(wnids))} distinct wnids, expected {info.num_classes}"]
    problems += [f"{path / 'train' / w / 'images'}: missing or without images" for w in wnids
                 if not (path / "train" / w / "images").is_dir() or not images(path / "train" / w / "images")]
    known = set(wnids)
    lines = [line.split("\t") for line in (path / "val" / "val_annotations.txt").read_text().splitlines() if line]
    bad = [f[0] for f in lines if len(f) < 2 or f[1] not in known or not (path / "val" / "images" / f[0]).is_file()]
    if bad or not lines:
        problems.append(f"{path / 'val' / 'val_annotations.txt'}: {len(bad)} of {len(lines)} lines name a missing "
                        f"image or an unknown wnid (e.g. {', '.join(bad[:3]) or 'no lines'})")
    if problems:
        raise MissingDataError("; ".join(problems))


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
    """Whether every file ``name`` (a dataset or a checkpoint requirement) needs is under the
    data root (presence only: nothing is read)."""
    if is_checkpoint(name):
        return checkpoint_path(name, root).is_file()
    try:
        locate(name, root)
        return True
    except MissingDataError:
        return False
