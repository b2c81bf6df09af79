"""Shared fixtures. The fast tier runs by default on the CPU; the slow tier (mini-scale
checks on real data under BENCH_DATA, default ../shared/data) is selected by its marker:
``pytest -m slow``."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test writes results and caches under its own temporary directory."""
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_DEVICE", "cpu")
    torch.set_num_threads(1)


def tiny_model(num_classes: int = 10, in_channels: int = 3, width: int = 8):
    from bench.models import build

    return build({"name": "resnet", "blocks": [1, 1, 1, 1], "width": width}, num_classes, in_channels)


@pytest.fixture(scope="session")
def trained():
    """A small standard-trained model on synthetic CIFAR-10-shaped data, and its test split."""
    from bench.data import load
    from bench.data.loader import DeviceLoader

    torch.manual_seed(0)
    data = load("cifar10", source="synthetic", synthetic_size=(512, 256))
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = DeviceLoader(data.train, 64, torch.device("cpu"), shuffle=True, augment="crop_flip")
    for epoch in range(8):
        model.train()
        for x, y in loader.batches(0, epoch):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    x = data.test.x[:128].float() / 255
    y = data.test.y[:128]
    return model, x, y
