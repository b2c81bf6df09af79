"""Per-parameter gradient-norm ratios of adversarial to clean examples during training
(HE: Pang et al., NeurIPS 2020, Sec. 4.4 and Fig. 3: "the ratios of E(‖∇ω L(x*)‖ /
‖∇ω L(x)‖) w.r.t. different parameters ω ... The model is trained for 70 epochs on
CIFAR-10 using PGD-AT").

Here: during the 1-indexed training epoch ``epoch`` (70 of the paper's 100; the plan
rescales it with the run's budget), for every batch and every trainable parameter ω,
‖∇ω L(x*)‖₂ is read from ``p.grad`` after the method's backward (PGD-AT's objective is L on
x* alone: CE, or CE(s·(cos θ − m·1_y), y) with HE's head) and ‖∇ω L(x)‖₂ from the same loss
on the clean batch, forwarded in train mode as the method's own forward, by
``torch.autograd.grad`` without a trace (``p.grad``, BatchNorm statistics, random generators
and an HE head's projected weights untouched, so training is unchanged). The per-batch
ratios are averaged over the epoch (the caption's E(ratio)); the ratio of the mean norms is
recorded too. Norms stay on the device and are read once, at the end of the epoch.
Parameters (defaults): epoch (70). Records (one per parameter): epoch, param (its name),
ratio, ratio_of_means, ratio_std, adv_norm, clean_norm. Summary: ratio_mean (the mean ratio
over convolution weights, the parameters Fig. 3 labels 'conv'), conv_params. AT_HE's only
gradient-printing code is ImageNet FreeAT's (``--print_gradients``), which prints a ratio of
means on an unnormalised clean input; see the spec's choices.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models.base import HypersphereHead, FINAL_LAYERS, loss_params
from . import PROBES
from .base import Probe, untouched


def is_conv_weight(name: str, shape) -> bool:
    return name.endswith("weight") and len(shape) == 4


@PROBES.register("layer_grad_ratio")
class LayerGradRatio(Probe):
    name = "layer_grad_ratio"
    defaults = {"epoch": 70}

    def __init__(self, model, **params):
        super().__init__(model, **params)
        self.names, self.params_ = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
        self._clean: torch.Tensor | None = None
        self._sums: torch.Tensor | None = None   # per parameter: Σ ratio, Σ ratio², Σ adv, Σ clean
        self._batches = 0

    def _active(self, step) -> bool:
        return step.epoch + 1 == self.epoch

    def after_loss(self, step, x, y, terms, loss):
        if not self._active(step):
            return
        heads = [m for n in FINAL_LAYERS if isinstance(m := getattr(self.model, n, None), HypersphereHead)]
        saved = [h.weight.data.clone() for h in heads]   # an HE head projects its weights in forward
        with untouched(self.model):
            out = self.model(x)
            clean_loss = F.cross_entropy(loss_params(self.model).margin_logits(out, y), y)
        grads = torch.autograd.grad(clean_loss, self.params_, allow_unused=True)
        for h, w in zip(heads, saved):
            h.weight.data.copy_(w)
        self._clean = torch.stack([g.detach().float().norm() if g is not None else torch.zeros((), device=x.device)
                                   for g in grads])

    def after_backward(self, step, loss):
        if not self._active(step) or self._clean is None:
            return
        adv = torch.stack([p.grad.detach().float().norm() if p.grad is not None else torch.zeros_like(self._clean[0])
                           for p in self.params_])
        ratio = adv / self._clean.clamp_min(1e-30)
        rows = torch.stack([ratio, ratio ** 2, adv, self._clean])
        self._sums = rows if self._sums is None else self._sums + rows
        self._batches += 1
        self._clean = None

    def end_epoch(self, epoch):
        if self._sums is None:
            return []
        s = (self._sums / self._batches).tolist()     # one read
        out = []
        for i, name in enumerate(self.names):
            mean, sq, adv, clean = s[0][i], s[1][i], s[2][i], s[3][i]
            out.append({"epoch": epoch + 1, "param": name, "shape": list(self.params_[i].shape), "ratio": mean,
                        "ratio_std": math.sqrt(max(sq - mean * mean, 0.0)), "adv_norm": adv, "clean_norm": clean,
                        "ratio_of_means": adv / clean if clean > 0 else float("inf"), "batches": self._batches})
        self._sums, self._batches = None, 0
        return out

    @staticmethod
    def summary(records, **_):
        conv = [r["ratio"] for r in records if is_conv_weight(r["param"], r["shape"]) and math.isfinite(r["ratio"])]
        return {"conv_params": len(conv), "ratio_mean": sum(conv) / len(conv) if conv else None,
                "epoch": records[0]["epoch"] if records else None}
