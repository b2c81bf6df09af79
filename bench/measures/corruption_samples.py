"""Sample corrupted images and the model's predictions on them (DRA: Hou et al., IJCNN 2022,
Fig. 5: "Corrupted image samples in Cifar-10-C", the six corruptions of Table VII).

What it gives: for one test image (``index``, CIFAR-10-C rows repeat the test set in every
severity block), each corruption at each severity as the release stores it
(``CIFAR-10-C/<corruption>.npy``, row (severity − 1)·N + index) or, at the smoke scale, the
synthetic stand-in of bench/data/corruptions.py applied to the loader's image ``index``; the
clean image; and the evaluated model's prediction on each. The paper names neither the image
nor the severities (a fixed test image and all five severities here).
Arguments (defaults): corruptions (Table VII's six: snow, frost, zoom_blur, motion_blur,
jpeg_compression, gaussian_noise), severities ([1, 2, 3, 4, 5]), index (0),
source ("cifar10c" | "synthetic"). Input range [0, 1].
Result: n (images shown), clean (accuracy % of the loader, for the header), correct (% of the shown
corrupted images the model classifies correctly), label, pred_clean, x (the clean image), and
images {corruption: {severity: {x, pred}}} (lists).
"""
from __future__ import annotations

from typing import Any

import torch

from ..attacks.base import model_mode
from ..data import corruptions as C
from ..data.loader import to_float
from ..data.locate import data_root
from ..errors import SpecError
from ..evaluate import clean_accuracy
from . import MEASURES
from .base import Measure

TABLE7 = ["snow", "frost", "zoom_blur", "motion_blur", "jpeg_compression", "gaussian_noise"]


@MEASURES.register("corruption_samples")
class CorruptionSamples(Measure):
    name = "corruption_samples"
    defaults = {"corruptions": TABLE7, "severities": [1, 2, 3, 4, 5], "index": 0, "source": "cifar10c"}
    choices = {"source": ("cifar10c", "synthetic")}

    @classmethod
    def validate(cls, params):
        unknown = [c for c in params["corruptions"] if c not in C.CORRUPTIONS + C.EXTRA_CORRUPTIONS]
        bad = [s for s in params["severities"] if s not in C.SEVERITIES]
        if unknown or bad or not params["corruptions"] or not params["severities"] or params["index"] < 0:
            raise SpecError(f"measure 'corruption_samples': unknown corruption(s) {unknown} or severities {bad}, "
                            f"or a negative index")

    def evaluate(self, loader, seed: int = 0, progress=None) -> dict[str, Any]:
        if self.index >= loader.n:
            raise SpecError(f"measure 'corruption_samples': index {self.index} beyond the {loader.n} test images")
        dev = loader.device
        x0, y0 = to_float(loader.x[self.index:self.index + 1]), loader.y[self.index:self.index + 1]
        if self.source == "cifar10c":
            root = data_root()
            C.check_files(root, self.corruptions)
        predict = lambda x: int(self.model(x.to(dev)).argmax(1)[0])
        images: dict[str, dict[str, Any]] = {}
        right = 0
        label = int(y0[0])
        with model_mode(self.model, False), torch.no_grad():
            pred_clean = predict(x0)
            for c in self.corruptions:
                images[c] = {}
                for s in self.severities:
                    if self.source == "cifar10c":
                        xs, ys = C.load_cifar10c(root, c, s, self.index + 1)
                        x, label = to_float(xs[-1:]), int(ys[-1])
                    else:
                        x = C.corrupt(x0, c, s, C.corruption_generator(dev, seed, c, 0))
                    pred = predict(x)
                    right += pred == label
                    images[c][str(s)] = {"x": x[0].tolist(), "pred": pred}
        shown = len(self.corruptions) * len(self.severities)
        return {"n": shown, "clean": clean_accuracy(self.model, loader), "correct": 100.0 * right / shown,
                "label": label, "pred_clean": pred_clean, "x": x0[0].tolist(), "images": images,
                "index": self.index, "source": self.source, "corruptions": list(self.corruptions),
                "severities": list(self.severities)}
