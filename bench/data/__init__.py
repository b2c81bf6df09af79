"""Dataset registry (:data:`DATASETS`, torch-free), loading with fingerprints
(:mod:`.store`) and device-side batching (:mod:`.loader`)."""
from __future__ import annotations

from .catalog import DATASETS, DatasetInfo, Source
from .locate import available, data_root, locate

_LAZY = {"Loaded", "Split", "load"}


def __getattr__(name: str):
    # store imports torch; keep `import bench.data` cheap for planning
    if name in _LAZY:
        from . import store

        return getattr(store, name)
    raise AttributeError(name)


__all__ = ["DATASETS", "DatasetInfo", "Source", "available", "data_root", "locate", *sorted(_LAZY)]
