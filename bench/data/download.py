"""Downloads, only on explicit request (``bench data download NAME``): torchvision's
own downloaders write the native layouts that :mod:`bench.data.catalog` expects, and
robustbench's loader fetches a RobustBench checkpoint (``robustbench:<dataset>/<threat>/<id>``)
into the layout :mod:`bench.data.locate` expects."""
from __future__ import annotations

from pathlib import Path

from ..errors import MissingDataError


def download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd

    from .locate import ROBUSTBENCH_DIR

    root.mkdir(parents=True, exist_ok=True)
    if name.startswith("robustbench:"):
        from ..models.robustbench import entry, zoo

        dataset, threat, model = name.partition(":")[2].split("/")
        entry(model, dataset, threat)   # a clear error for an unknown ID before anything is fetched
        zoo().utils.load_model(model, model_dir=str(root / ROBUSTBENCH_DIR), dataset=dataset, threat_model=threat)
    elif name == "mnist":
        tvd.MNIST(root, train=True, download=True), tvd.MNIST(root, train=False, download=True)
    elif name == "cifar10":
        tvd.CIFAR10(root, download=True)
    elif name == "cifar100":
        tvd.CIFAR100(root, download=True)
    elif name == "svhn":
        for split in ("train", "test"):
            tvd.SVHN(root / "svhn", split=split, download=True)
    else:
        raise MissingDataError(f"no automatic download for {name!r}; see `bench data check {name}`")
    print(f"{name}: downloaded into {root}")
