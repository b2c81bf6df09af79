"""Datasets: registry, synthetic data, missing data, fingerprints, device-side batching."""
from __future__ import annotations

import os

import pytest
import torch

from bench.data import DATASETS, load
from bench.data.loader import DeviceLoader, random_crop
from bench.errors import MissingDataError, UnknownNameError

from conftest import SHARED_DATA


IMAGE_DATASETS = [n for n in DATASETS.names() if DATASETS.get(n).generator is None]


@pytest.mark.parametrize("name", IMAGE_DATASETS)
def test_synthetic_has_real_shape_and_classes_and_is_deterministic(name):
    info = DATASETS.get(name)
    a = load(name, source="synthetic", synthetic_size=(64, 32))
    b = load(name, source="synthetic", synthetic_size=(64, 32))
    assert a.train.x.shape == (64, *info.shape) and a.train.x.dtype == torch.uint8
    assert int(a.train.y.max()) < info.num_classes and a.test.x.shape[0] == 32
    assert torch.equal(a.train.x, b.train.x) and a.fingerprint["sha256"] == b.fingerprint["sha256"]
    assert a.fingerprint["exact"] is False and a.fingerprint["source"] == "synthetic"


def test_hat_toy_problem_follows_app_a():
    d = load("toy3d", source="synthetic")   # generated from the paper's constants at every scale
    assert d.fingerprint["exact"] is True and d.train.x.dtype == torch.float32
    x, y = d.train.x, d.train.y
    radius = x[:, :2].norm(dim=1)
    assert abs(radius[y == 0].mean() - 0.35) < 0.1 and abs(radius[y == 1].mean() - 1.0) < 0.05
    assert x[y == 0, 2].min() >= 0.65 and x[y == 0, 2].max() <= 0.70
    assert x[y == 1, 2].min() >= 0.80 and x[y == 1, 2].max() <= 0.85
    assert int((y == 0).sum()) == int((y == 1).sum())


def test_missing_dataset_names_the_files_and_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    with pytest.raises(MissingDataError) as e:
        load("svhn")
    msg = str(e.value)
    assert "train,test}_32x32.mat" in msg and "ufldl.stanford.edu" in msg and str(tmp_path) in msg


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(UnknownNameError, match="unknown dataset 'cifar11'.*known: cifar10"):
        load("cifar11", source="synthetic")


def test_subsets_are_fixed_and_nested():
    full = load("cifar10", source="synthetic", synthetic_size=(64, 64))
    small = load("cifar10", source="synthetic", synthetic_size=(64, 64), n_test=10)
    again = load("cifar10", source="synthetic", synthetic_size=(64, 64), n_test=10)
    assert small.test.x.shape[0] == 10 and torch.equal(small.test.x, again.test.x)
    assert small.fingerprint["test_subset"] and small.fingerprint["full_test"] == 64
    rows = {tuple(r.flatten()[:20].tolist()) for r in full.test.x}
    assert all(tuple(r.flatten()[:20].tolist()) in rows for r in small.test.x)


def test_first_test_subset_is_the_first_images_in_file_order():
    """BAT's early stopping uses "the first batch of the test set" (subset: first)."""
    full = load("cifar10", source="synthetic", synthetic_size=(64, 64))
    first = load("cifar10", source="synthetic", synthetic_size=(64, 64), n_test=10, test_subset="first")
    rand = load("cifar10", source="synthetic", synthetic_size=(64, 64), n_test=10)
    assert torch.equal(first.test.x, full.test.x[:10]) and torch.equal(first.test.y, full.test.y[:10])
    assert not torch.equal(rand.test.x, full.test.x[:10])
    assert first.fingerprint["test_subset"] != rand.fingerprint["test_subset"]
    assert (first.fingerprint["test_subset_rule"], rand.fingerprint["test_subset_rule"]) == ("first", "random")
    with pytest.raises(MissingDataError, match="unknown test subset 'last'"):
        load("cifar10", source="synthetic", n_test=10, test_subset="last")


def test_loader_augments_on_device_deterministically_per_epoch():
    data = load("cifar10", source="synthetic", synthetic_size=(100, 10))
    loader = DeviceLoader(data.train, 32, torch.device("cpu"), shuffle=True, augment="crop_flip")
    e0 = [x for x, _ in loader.batches(seed=1, epoch=0)]
    e0b = [x for x, _ in loader.batches(seed=1, epoch=0)]
    e1 = [x for x, _ in loader.batches(seed=1, epoch=1)]
    assert len(e0) == 4 and e0[-1].shape[0] == 4
    assert all(torch.equal(a, b) for a, b in zip(e0, e0b))
    assert not torch.equal(e0[0], e1[0])
    assert 0 <= min(x.min() for x in e0) and max(x.max() for x in e0) <= 1


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float).view(2, 1, 4, 4)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):
        assert any(torch.equal(out[b, 0], padded[b, 0, i:i + 4, j:j + 4]) for i in range(5) for j in range(5))


@pytest.mark.skipif(not (SHARED_DATA / "MNIST").exists(), reason="../shared/data not present")
def test_real_mnist_is_exact_and_jpeg_cifar10_is_a_labelled_substitute(monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(SHARED_DATA))
    mnist = load("mnist", n_train=100, n_test=50)
    assert mnist.fingerprint["exact"] is True and mnist.fingerprint["full_train"] == 60000
    assert mnist.train.x.shape == (100, 1, 28, 28)
    if os.environ.get("BENCH_SLOW") == "1":  # decoding 60k JPEGs takes a while
        cifar = load("cifar10", n_train=100, n_test=50)
        assert cifar.fingerprint["exact"] is False and "substitute" in cifar.fingerprint["note"]


def test_imagefolder_decodes_to_contiguous_nchw(tmp_path, monkeypatch):
    """Decoded images are C-ordered N×C×H×W (AutoAttack views gradients shaped like them)."""
    from PIL import Image

    from bench.data.catalog import CIFAR10_CLASSES

    for split in ("train", "test"):
        for cls in CIFAR10_CLASSES:
            d = tmp_path / "cifar10" / split / cls
            d.mkdir(parents=True)
            for i in range(2 if cls in ("airplane", "automobile") else 1):
                pixels = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(d / f"{i}.png")
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    data = load("cifar10")
    assert data.train.x.shape == (12, 3, 32, 32) and data.train.x.is_contiguous()
    assert data.test.y.tolist() == [0, 0, 1, 1, *range(2, 10)] and data.fingerprint["exact"] is None
    assert data.fingerprint["source"] == "imagefolder:cifar10"
    # grouped by class, an ImageFolder has no original order: "first" keeps the random subset
    first = load("cifar10", n_test=4, test_subset="first")
    assert first.fingerprint["test_subset_rule"] == "random" and len(set(first.test.y.tolist())) > 1
