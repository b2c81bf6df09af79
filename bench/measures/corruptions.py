"""Accuracy under common corruptions, as RobustBench computes it on CIFAR-10-C
(Hendrycks & Dietterich, ICLR 2019; HAT: Rade & Moosavi-Dezfooli, App. E.3, Table 5:
"accuracy on common corruptions using the default code of RobustBench").

What it measures: the accuracy (%) of the model on each of the 15 benchmark corruptions
at each severity 1–5, and their mean with equal weights over corruptions × severities
(RobustBench's ``corruptions_evaluation``: one accuracy per (corruption, severity), then
the mean of the 75 values). Corruption c at severity s is evaluated on the first ``n``
images of that severity block of ``CIFAR-10-C/<c>.npy``, in file order, with the labels of
the same rows, exactly the images RobustBench's loader takes for one corruption.
``clean`` is the accuracy on the protocol's test loader (RobustBench 1.1.1 reports clean
accuracy on the whole CIFAR-10 test set: use the full test split for the same number).

Sources:
  "imagenetc": ImageNet-C's published JPEG folders (``$BENCH_DATA/ImageNet-C/<corruption>/
      <severity>/<wnid>/``, HE Tables 5 and 12), streamed with decode workers
      (bench/data/stream.py); ``n`` images per cell are a fixed random subset of the 50000
      (the same for every cell), preprocessed by ``preprocess``: "resize_center_crop" (AT_HE's
      ``validate_ImagetNet_C``: Resize(256) + CenterCrop(224) on the 224-px files, the
      transform that produced HE's numbers) or "center_crop" (Hendrycks & Dietterich's).
  "cifar10c": the published files under the data root (``$BENCH_DATA/CIFAR-10-C/``, see
      :mod:`bench.data.corruptions`); the loader's images serve only for ``clean``.
      Missing files stop the measure before any evaluation, naming them.
  "synthetic": the synthetic stand-ins of the same 15 corruptions
      (:func:`bench.data.corruptions.corrupt`) applied to the first ``n`` images of the
      loader (smoke scale; never comparable with published numbers). Randomness depends
      only on (seed, corruption, batch), so all severities share the same draws.

Arguments (defaults):
  source ("cifar10c" | "synthetic"),
  n (None: every image of a severity for cifar10c, 10000 as RobustBench's default
      n_examples=10000; the loader's size for synthetic): images per corruption and severity,
  batch_size (None: the loader's batch size); accuracy does not depend on it,
  severities ([1, 2, 3, 4, 5]),
  corruptions (None: the 15 of the benchmark; for cifar10c the release's 4 extra ones may
      be named too, they are not in the standard mean),
  preprocess ("resize_center_crop" | "center_crop"; imagenetc only).
Input range: [0, 1] (uint8 pixels / 255, as RobustBench feeds its models).
Result: n, clean, n_clean, mean, per_corruption {corruption: {"1".."5": accuracy}},
per_corruption_mean {corruption: mean over severities} (HE Table 5's columns),
per_severity {"1".."5": mean over corruptions}, source, corruptions, severities, and for
cifar10c ``files`` (directory, file sizes, sha256 of labels.npy). Model in eval mode,
no gradients, data on the loader's device, one host synchronisation at the end.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from ..attacks.base import model_mode
from ..data import corruptions as C
from ..data.loader import to_float
from ..data.locate import data_root
from ..errors import SpecError
from . import MEASURES
from .base import Measure

SOURCES = {"cifar10c": "cifar10c", "imagenetc": "imagenetc", "synthetic": "synthetic corruptions of the test split"}
PREPROCESS = ("resize_center_crop", "center_crop")


def _file_record(directory: Path, corruptions: list[str]) -> dict[str, Any]:
    labels = directory / "labels.npy"
    return {"dir": str(directory.resolve()),
            "sizes": {p.name: p.stat().st_size for p in C.files(directory.parent, corruptions)},
            "labels_sha256": hashlib.sha256(labels.read_bytes()).hexdigest()}


@MEASURES.register("corruptions")
class Corruptions(Measure):
    name = "corruptions"
    defaults = {"source": "cifar10c", "n": None, "batch_size": None, "severities": [1, 2, 3, 4, 5],
                "corruptions": None, "preprocess": "resize_center_crop"}
    choices = {"source": tuple(SOURCES), "preprocess": PREPROCESS}

    def __init__(self, model, helpers=None, **params):
        super().__init__(model, helpers, **params)
        if self.source not in SOURCES:
            raise SpecError(f"measure 'corruptions': source must be one of {sorted(SOURCES)}, got {self.source!r}")
        self.corruptions = list(C.CORRUPTIONS if self.corruptions is None else self.corruptions)
        allowed = C.CORRUPTIONS + (C.EXTRA_CORRUPTIONS if self.source == "cifar10c" else ())
        unknown = [c for c in self.corruptions if c not in allowed]
        if unknown or not self.corruptions:
            raise SpecError(f"measure 'corruptions' (source {self.source}): unknown corruption(s) {unknown}; "
                            f"known: {', '.join(allowed)}")
        self.severities = [int(s) for s in self.severities]
        if not self.severities or any(s not in C.SEVERITIES for s in self.severities):
            raise SpecError(f"measure 'corruptions': severities must be among {list(C.SEVERITIES)}, "
                            f"got {self.severities}")
        if self.n is not None and int(self.n) < 1:
            raise SpecError(f"measure 'corruptions': n must be positive, got {self.n}")

    def _correct(self, x: torch.Tensor, y: torch.Tensor, channels_last: bool) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return (self.model(x).argmax(1) == y).sum()

    def evaluate(self, loader, seed: int = 0, progress=None) -> dict[str, Any]:
        dev = loader.device
        bs = int(self.batch_size or loader.batch_size)
        cl = getattr(loader, "channels_last", False)
        cells = [(c, s) for c in self.corruptions for s in self.severities]
        if self.source == "cifar10c":
            root = data_root()
            directory = C.check_files(root, self.corruptions)      # before any work
            n = int(self.n) if self.n is not None else min(C.severity_size(root, c) for c in self.corruptions)
        elif self.source == "imagenetc":
            cell_split = self._imagenetc()                          # before any work
            n = len(cell_split(*cells[0]).y)
        else:
            n = int(self.n) if self.n is not None else loader.n
            if n > loader.n:
                raise SpecError(f"measure 'corruptions': n={n} exceeds the {loader.n} test images of the loader")
        per_cell = -(-n // bs)
        if progress is not None and hasattr(progress, "reset"):
            progress.reset(total=len(loader) + per_cell * len(cells))

        clean = torch.zeros((), dtype=torch.long, device=dev)
        correct = torch.zeros(len(cells), dtype=torch.long, device=dev)
        with model_mode(self.model, False), torch.no_grad():
            for x, y in loader.batches():
                clean += self._correct(x, y, cl)
                if progress is not None:
                    progress.update(1)
            for i, (corruption, severity) in enumerate(cells):
                if self.source == "imagenetc":
                    from ..data.stream import StreamLoader

                    for x, y in StreamLoader(cell_split(corruption, severity), bs, dev, mode=self.preprocess,
                                             channels_last=cl).batches():
                        correct[i] += self._correct(x, y, False)
                        if progress is not None:
                            progress.update(1)
                    continue
                if self.source == "cifar10c":
                    x_all, y_all = C.load_cifar10c(root, corruption, severity, n)
                    x_all, y_all = x_all.to(dev), y_all.to(dev)
                elif hasattr(loader, "x"):
                    x_all, y_all = loader.x[:n], loader.y[:n]
                else:   # a streaming loader (synthetic ImageNet at the smoke scale): its first n images
                    xs, ys = zip(*loader.batches())
                    x_all, y_all = torch.cat(xs)[:n], torch.cat(ys)[:n]
                for b, start in enumerate(range(0, n, bs)):
                    x = to_float(x_all[start:start + bs])
                    if self.source == "synthetic":
                        x = C.corrupt(x, corruption, severity, C.corruption_generator(dev, seed, corruption, b))
                    correct[i] += self._correct(x, y_all[start:start + bs], cl)
                    if progress is not None:
                        progress.update(1)

        acc = (100.0 * correct.double() / n).tolist()                # the one host synchronisation
        clean_acc = 100.0 * clean.item() / loader.n
        per_corruption: dict[str, dict[str, float]] = {c: {} for c in self.corruptions}
        for (corruption, severity), a in zip(cells, acc):
            per_corruption[corruption][str(severity)] = a
        per_severity = {str(s): sum(per_corruption[c][str(s)] for c in self.corruptions) / len(self.corruptions)
                        for s in self.severities}
        result = {"n": n, "clean": clean_acc, "n_clean": loader.n, "mean": sum(acc) / len(acc),
                  "per_corruption": per_corruption, "per_severity": per_severity,
                  "per_corruption_mean": {c: sum(v.values()) / len(v) for c, v in per_corruption.items()},
                  "source": SOURCES[self.source], "corruptions": self.corruptions,
                  "severities": self.severities}
        if self.source == "cifar10c":
            result["files"] = _file_record(directory, self.corruptions)
        if self.source == "imagenetc":
            result["preprocess"] = self.preprocess
        return result

    def _imagenetc(self):
        """(corruption, severity) → the cell's FileSplit (``n`` of its images, a fixed subset),
        after checking that every cell's folder is present."""
        from ..data import stream
        from ..data.locate import locate
        from ..data.store import _subset

        _, directory = locate("imagenetc")
        missing = [f"{c}/{s}" for c in self.corruptions for s in self.severities if not (directory / c / str(s)).is_dir()]
        if missing:
            raise SpecError(f"ImageNet-C under {directory} lacks {', '.join(missing[:5])}")

        def cell(corruption: str, severity: int):
            split = stream.scan(directory / corruption / str(severity))
            return _subset(split, None if self.n is None else int(self.n), 2)[0]

        return cell
