"""Common corruptions: the CIFAR-10-C .npy loader (on a small fake release), its missing-file
error, the synthetic corruptions, and the measure end to end (RobustBench's averaging)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from bench.data import available, load
from bench.data import corruptions as C
from bench.data.loader import DeviceLoader
from bench.data.store import Split
from bench.errors import MissingDataError, SpecError
from bench.evaluate import run_measure

from conftest import tiny_model

K = 4                                   # images per severity in the fake release
BASE_LABELS = np.array([3, 1, 4, 1], dtype=np.uint8)   # the "test labels", repeated per severity
FAKE = ("gaussian_noise", "fog")
MARK = 250                              # a pixel at (row 1, column 2) of every image, all channels


def code(ci: int, severity: int, i: int) -> int:
    return 100 * ci + 10 * severity + i


def write_fake(root, corruptions=FAKE, k=K, labels="tiled"):
    d = root / "CIFAR-10-C"
    d.mkdir(parents=True, exist_ok=True)
    for ci, c in enumerate(corruptions):
        a = np.zeros((5 * k, 32, 32, 3), dtype=np.uint8)
        for s in range(1, 6):
            for i in range(k):
                a[(s - 1) * k + i] = code(ci % 2, s, i) + np.arange(3, dtype=np.uint8)   # channel ch: code + ch
        a[:, 1, 2, :] = MARK
        np.save(d / f"{c}.npy", a)
    np.save(d / "labels.npy", np.tile(BASE_LABELS[:k], 5) if labels == "tiled" else BASE_LABELS[:k])
    return d


class Lookup(nn.Module):
    """Reads the code at pixel (0, 0) of channel 0 and answers the label of image i, except
    at the severities in ``wrong`` and for images with index ≥ ``upto``."""

    def __init__(self, wrong=(), upto=K):
        super().__init__()
        self.wrong, self.upto = set(wrong), upto
        self.labels = torch.tensor(BASE_LABELS[:K].astype(np.int64))

    def forward(self, x):
        v = (x[:, 0, 0, 0] * 255).round().long()
        i, s = v % 10, (v // 10) % 10
        y = self.labels[i.clamp(max=K - 1)]
        bad = (i >= self.upto) | torch.isin(s, torch.tensor(sorted(self.wrong) or [-1]))
        return nn.functional.one_hot(torch.where(bad, (y + 1) % 10, y), 10).float()


def clean_loader(n=K, batch_size=3):
    x = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)        # code of image i at severity 0
    return DeviceLoader(Split(x, torch.tensor(BASE_LABELS[:n].astype(np.int64))), batch_size, torch.device("cpu"))


# ---------------------------------------------------------------- the published layout

def test_the_benchmark_has_the_15_robustbench_corruptions():
    robustbench = {"shot_noise", "motion_blur", "snow", "pixelate", "gaussian_noise", "defocus_blur",
                   "brightness", "fog", "zoom_blur", "frost", "glass_blur", "impulse_noise", "contrast",
                   "jpeg_compression", "elastic_transform"}
    assert len(C.CORRUPTIONS) == 15 and set(C.CORRUPTIONS) == robustbench
    assert not set(C.EXTRA_CORRUPTIONS) & robustbench
    assert sum(len(f) for f in C.FAMILIES.values()) == 15


@pytest.mark.parametrize("labels", ["tiled", "one block"])
def test_loader_returns_the_severity_slice_and_its_labels(tmp_path, labels):
    write_fake(tmp_path, labels=labels)
    for ci, c in enumerate(FAKE):
        for s in range(1, 6):
            x, y = C.load_cifar10c(tmp_path, c, s)
            assert x.shape == (K, 3, 32, 32) and x.dtype == torch.uint8
            assert y.dtype == torch.int64 and y.tolist() == BASE_LABELS.tolist()
            assert x[:, 0, 0, 0].tolist() == [code(ci, s, i) for i in range(K)]
            assert x[0, :, 5, 5].tolist() == [code(ci, s, 0) + ch for ch in range(3)]   # HWC → CHW
            assert (x[:, :, 1, 2] == MARK).all() and (x[:, :, 2, 1] != MARK).all()      # rows, columns kept
    x, y = C.load_cifar10c(tmp_path, "fog", 3, n=2)                  # the first n, as RobustBench
    assert x[:, 0, 0, 0].tolist() == [code(1, 3, 0), code(1, 3, 1)] and y.tolist() == [3, 1]
    assert C.severity_size(tmp_path, "fog") == K
    with pytest.raises(ValueError, match="n must be in 1..4"):
        C.load_cifar10c(tmp_path, "fog", 1, n=K + 1)
    with pytest.raises(ValueError, match="severity"):
        C.load_cifar10c(tmp_path, "fog", 6)


def test_missing_files_are_named_with_where_to_get_them(tmp_path):
    with pytest.raises(MissingDataError) as e:
        C.load_cifar10c(tmp_path, "snow", 1)
    msg = str(e.value)
    assert str(tmp_path / "CIFAR-10-C" / "snow.npy") in msg and "CIFAR-10-C/labels.npy" in msg
    assert "https://zenodo.org/record/2535967" in msg and "CIFAR-10-C.tar" in msg
    write_fake(tmp_path)
    with pytest.raises(MissingDataError) as e:
        C.check_files(tmp_path)
    listed = [line.strip() for line in str(e.value).splitlines() if line.startswith("    ")]
    assert str(tmp_path / "CIFAR-10-C" / "jpeg_compression.npy") in listed and len(listed) == 13
    assert not any(p.endswith(("fog.npy", "gaussian_noise.npy", "labels.npy")) for p in listed)
    assert not available("cifar10c", tmp_path)
    write_fake(tmp_path, corruptions=C.CORRUPTIONS, k=1)
    assert available("cifar10c", tmp_path)


def test_a_file_of_another_layout_is_refused(tmp_path):
    d = tmp_path / "CIFAR-10-C"
    d.mkdir()
    np.save(d / "fog.npy", np.zeros((10, 3, 32, 32), dtype=np.uint8))
    np.save(d / "labels.npy", np.zeros(10, dtype=np.uint8))
    with pytest.raises(MissingDataError, match="5·N×32×32×3 uint8"):
        C.load_cifar10c(tmp_path, "fog", 1)


# ---------------------------------------------------------------- synthetic corruptions

@pytest.fixture(scope="module")
def images():
    return load("cifar10", source="synthetic", synthetic_size=(8, 16)).test.x.float() / 255


@pytest.mark.parametrize("corruption", C.CORRUPTIONS)
def test_synthetic_corruption_is_deterministic_bounded_and_grows_with_severity(images, corruption):
    gen = lambda seed: C.corruption_generator("cpu", seed, corruption)
    change = []
    for s in C.SEVERITIES:
        a = C.corrupt(images, corruption, s, gen(0))
        assert a.shape == images.shape and a.dtype == torch.float32
        assert torch.equal(a, C.corrupt(images, corruption, s, gen(0)))
        assert a.min() >= 0 and a.max() <= 1
        change.append((a - images).abs().mean().item())
    assert change[0] > 0 and all(p < q for p, q in zip(change, change[1:])), change
    assert torch.equal(C.corrupt((images * 255).round().to(torch.uint8), corruption, 3, gen(1)),
                       C.corrupt((images * 255).round() / 255, corruption, 3, gen(1)))


def test_synthetic_randomness_follows_the_seed_and_other_shapes_work(images):
    a = C.corrupt(images, "gaussian_noise", 2, C.corruption_generator("cpu", 0, "gaussian_noise"))
    b = C.corrupt(images, "gaussian_noise", 2, C.corruption_generator("cpu", 1, "gaussian_noise"))
    assert not torch.equal(a, b)
    gray = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))   # MNIST-shaped
    for c in C.CORRUPTIONS:
        out = C.corrupt(gray, c, 5)
        assert out.shape == gray.shape and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="no synthetic corruption 'spatter'"):
        C.corrupt(images, "spatter", 1)


# ---------------------------------------------------------------- the measure

def test_measure_runs_end_to_end_on_synthetic_corruptions():
    torch.manual_seed(0)
    data = load("cifar10", source="synthetic", synthetic_size=(8, 24))
    loader = DeviceLoader(data.test, 16, torch.device("cpu"))
    model = tiny_model()
    r = run_measure(model, loader, {"name": "corruptions", "source": "synthetic"}, {})
    assert r["source"] == "synthetic corruptions of the test split" and r["n"] == 24
    assert 0 <= r["mean"] <= 100 and 0 <= r["clean"] <= 100
    assert list(r["per_corruption"]) == list(C.CORRUPTIONS)
    assert all(list(v) == ["1", "2", "3", "4", "5"] for v in r["per_corruption"].values())
    cells = [a for v in r["per_corruption"].values() for a in v.values()]
    assert r["mean"] == pytest.approx(sum(cells) / 75)
    assert r["mean"] == pytest.approx(sum(r["per_severity"].values()) / 5)
    assert json.loads(json.dumps(r))["per_corruption"] == r["per_corruption"]
    assert r["implementation"].startswith("bench.measures.corruptions")
    again = run_measure(model, loader, {"name": "corruptions", "source": "synthetic",
                                        "corruptions": ["snow", "fog"], "severities": [5]}, {})
    assert again["per_corruption"] == {c: {"5": r["per_corruption"][c]["5"]} for c in ("snow", "fog")}


def test_measure_on_the_files_averages_like_robustbench(tmp_path, monkeypatch):
    write_fake(tmp_path)
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    cfg = {"name": "corruptions", "corruptions": list(FAKE)}

    class Progress:
        total, done = None, 0

        def reset(self, total=None):
            self.total, self.done = total, 0

        def update(self, k=1):
            self.done += k

    bar = Progress()
    r = run_measure(Lookup(), clean_loader(), cfg, {}, progress=bar)
    assert r["mean"] == 100 and r["clean"] == 100 and r["n"] == K and r["source"] == "cifar10c"
    assert bar.done == bar.total == 2 + 2 * 5 * 2                   # clean batches + cells × batches
    assert r["files"]["sizes"]["fog.npy"] > 0 and len(r["files"]["labels_sha256"]) == 64

    r = run_measure(Lookup(wrong={5}), clean_loader(), cfg, {})     # every severity-5 cell wrong
    assert r["mean"] == pytest.approx(80) and r["per_severity"]["5"] == 0
    assert r["per_corruption"]["fog"] == {"1": 100.0, "2": 100.0, "3": 100.0, "4": 100.0, "5": 0.0}

    half = Lookup(upto=2)                                           # right on images 0 and 1 only
    assert run_measure(half, clean_loader(), {**cfg, "n": 2}, {})["mean"] == 100
    assert run_measure(half, clean_loader(), {**cfg, "severities": [2]}, {})["mean"] == 50


def test_measure_errors_are_clear(tmp_path, monkeypatch):
    write_fake(tmp_path)
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    with pytest.raises(MissingDataError, match="snow.npy"):          # before any evaluation
        run_measure(Lookup(), clean_loader(), {"name": "corruptions"}, {})
    for bad in ({"source": "imagenet-c"}, {"severities": [0]}, {"corruptions": ["rain"]},
                {"source": "synthetic", "corruptions": ["spatter"]}, {"nope": 1}):
        with pytest.raises(SpecError):
            run_measure(Lookup(), clean_loader(), {"name": "corruptions", **bad}, {})
    with pytest.raises(SpecError, match="exceeds"):
        run_measure(Lookup(), clean_loader(), {"name": "corruptions", "source": "synthetic", "n": 99}, {})
