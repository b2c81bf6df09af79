"""Datasets a paper defines by formula rather than by files (always exact)."""
from __future__ import annotations

import math

import torch

from .catalog import DatasetInfo

# HAT App. A: x1 = ρ_i cos z + ε1, x2 = ρ_i sin z + ε2, x3 ~ U(α_i, β_i), z ~ U(0, 2π), ε ~ N(0, σ²)
HAT_TOY = {"sigma": 0.2, "rho": (0.35, 1.0), "alpha": (0.65, 0.80), "beta": (0.70, 0.85)}


def hat_toy(info: DatasetInfo, n_train: int, n_test: int, seed: int = 0):
    """Balanced classes (label 0 = inner circle, i=1; label 1 = outer circle, i=2), float32."""
    g = torch.Generator().manual_seed(seed)
    c = HAT_TOY

    def sample(n: int):
        y = torch.arange(n) % 2
        y = y[torch.randperm(n, generator=g)]
        z = torch.rand(n, generator=g) * 2 * math.pi
        rho = torch.tensor(c["rho"])[y]
        lo, hi = torch.tensor(c["alpha"])[y], torch.tensor(c["beta"])[y]
        x1 = rho * torch.cos(z) + c["sigma"] * torch.randn(n, generator=g)
        x2 = rho * torch.sin(z) + c["sigma"] * torch.randn(n, generator=g)
        x3 = lo + (hi - lo) * torch.rand(n, generator=g)
        return torch.stack([x1, x2, x3], 1), y

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    return x_train, y_train, x_test, y_test


GENERATORS = {"hat_toy": hat_toy}
