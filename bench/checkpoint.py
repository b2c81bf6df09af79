"""Model checkpoints: weights plus what is needed to rebuild the network."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .fileio import torch_load, torch_save
from .models import build


def save(path: Path, model: torch.nn.Module, model_cfg: dict, num_classes: int, in_channels: int,
         **meta: Any) -> dict[str, Any]:
    """Write the checkpoint and return it (its weights a copy, not the live parameters)."""
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    ckpt = {"model": state, "model_cfg": model_cfg, "num_classes": num_classes, "in_channels": in_channels, **meta}
    torch_save(path, ckpt)
    return ckpt


def load(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    ckpt = torch_load(path, map_location="cpu", weights_only=True)   # unreadable: one error naming the file
    model = build(ckpt["model_cfg"], ckpt["num_classes"], ckpt["in_channels"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt
