"""Shared pieces of the model files: optional input normalisation inside the model
(inputs are always in [0,1]; where a paper normalises, the model does it), and the
final classifier every family builds with :func:`classifier`, which may be HE's
hypersphere-embedding head (Pang et al., NeurIPS 2020) instead of a linear layer.

Convention: a family's final classifier is its attribute ``linear`` (the CIFAR
families) or ``fc`` (torchvision's ResNets), built by ``classifier(features, classes,
head)`` from the model option ``head``; :func:`final_layer` finds it, :func:`embed`
returns the penultimate feature z it receives, and :func:`loss_params` the head's scale
and margin for the training losses (1 and 0 for a plain linear layer).

The HE head (``head: {fn, wn, s, m, mhe, bias}``, checked by ``bench.models.check_head``):
  fn (false): feature normalisation z̃ = z/‖z‖₂ (Eq. 4),
  wn (false | "projection" | "reparam"): weight normalisation W̃_l = W_l/‖W_l‖₂ per class
      (Eq. 4). "projection" is AT_HE's code: the rows of W are overwritten with their
      normalised values at every forward (no gradient through the normalisation; the
      optimiser step leaves the sphere and the next forward projects back). "reparam" is
      Eq. 4 as a reparameterisation (gradients flow through the normalisation),
  s (1.0), m (0.0): the scale and additive margin of the training loss
      L^m_CE = CE(s·(cos θ − m·1_y), y) (Eq. 6). They never enter the model's output:
      the model returns W̃ᵀz̃ = cos θ (with FN and WN), which is what evaluation attacks see,
      and the losses read s and m through :func:`loss_params`,
  mhe (false): m-HE (Sec. 3.5): S(−θ) instead of S(cos θ), θ = arccos(cos θ) (needs fn and
      wn; cos θ clamped to ±(1 − 1e-7) before arccos),
  bias (None): a bias vector; None means none when FN or WN is on ("no bias vector b exists
      in f̃(x)", Eq. 5; AT_HE's ImageNet code drops it whenever FN or WN is on).
With every option off the head is the plain linear layer W ᵀz + b.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Normalize(nn.Module):
    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None, channels: int):
        super().__init__()
        self.enabled = mean is not None
        mean = mean if mean is not None else [0.0] * channels
        std = std if std is not None else [1.0] * channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std if self.enabled else x


ARCCOS_CLAMP = 1e-7


class HypersphereHead(nn.Linear):
    """HE's softmax layer (Eqs. 4–6; m-HE Sec. 3.5); the options are in the module docstring."""

    def __init__(self, in_features: int, num_classes: int, fn: bool = False, wn: bool | str = False,
                 s: float = 1.0, m: float = 0.0, mhe: bool = False, bias: bool | None = None):
        self.fn, self.wn = bool(fn), ("projection" if wn is True else wn or False)
        self.s, self.m, self.mhe = float(s), float(m), bool(mhe)
        super().__init__(in_features, num_classes, bias=not (self.fn or self.wn) if bias is None else bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.fn:
            z = F.normalize(z, dim=1)
        weight = self.weight
        if self.wn == "projection":      # AT_HE: fc.weight.data = normalize(fc.weight.data) every forward
            self.weight.data.copy_(F.normalize(self.weight.data, dim=1))
        elif self.wn == "reparam":
            weight = F.normalize(self.weight, dim=1)
        out = F.linear(z, weight, self.bias)
        if self.mhe:
            out = -torch.acos(out.float().clamp(-1 + ARCCOS_CLAMP, 1 - ARCCOS_CLAMP))
        return out

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, fn={self.fn}, wn={self.wn}, s={self.s:g}, m={self.m:g}, "
                f"mhe={self.mhe}")


def classifier(in_features: int, num_classes: int, head: dict[str, Any] | None = None) -> nn.Module:
    """A family's final classifier: ``nn.Linear``, or the HE head for a non-empty ``head``."""
    if not head:
        return nn.Linear(in_features, num_classes)
    from . import check_head

    check_head(head)
    return HypersphereHead(in_features, num_classes, **head)


FINAL_LAYERS = ("linear", "fc", "fc2")   # the attribute names of a family's final classifier


def final_layer(model: nn.Module) -> nn.Linear:
    for name in FINAL_LAYERS:
        layer = getattr(model, name, None)
        if isinstance(layer, nn.Linear):
            return layer
    raise ValueError(f"{type(model).__name__} has no final linear classifier named {' or '.join(FINAL_LAYERS)} "
                     f"(models/base.py's convention), which this analysis needs")


def embed(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, output): the penultimate feature the final classifier receives, in the graph,
    and the model's output, from one forward pass."""
    seen: list[torch.Tensor] = []
    handle = final_layer(model).register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    try:
        out = model(x)
    finally:
        handle.remove()
    return seen[-1], out


@dataclass(frozen=True)
class LossParams:
    """The scale s and margin m the training losses apply to a model's output (Eq. 6)."""
    s: float = 1.0
    m: float = 0.0

    def margin_logits(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """s·(out − m·1_y): the logits of L^m_CE (identity for s = 1, m = 0)."""
        out = out.float()
        if self.m:
            out = out - self.m * F.one_hot(y, out.shape[1]).to(out.dtype)
        return self.s * out if self.s != 1 else out

    def scaled(self, out: torch.Tensor) -> torch.Tensor:
        """s·out (no margin)."""
        return self.s * out.float() if self.s != 1 else out.float()


def loss_params(model: nn.Module) -> LossParams:
    """The head's s and m; (1, 0) for a plain linear layer or a model outside the convention."""
    layer = next((getattr(model, n) for n in FINAL_LAYERS if isinstance(getattr(model, n, None), nn.Linear)), None)
    return LossParams(layer.s, layer.m) if isinstance(layer, HypersphereHead) else LossParams()
