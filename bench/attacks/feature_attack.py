"""The feature attack (Lin, https://github.com/Line290/FeatureAttack, 2019; HE: Pang et al.,
NeurIPS 2020, Table 2 "FeaAtt.", which cites the repository without settings).

Threat model ℓ∞, inputs in [0, 1], model in eval mode. For each test image x, ``n_targets``
target images are drawn at random (without replacement) from the test images of other
classes; for each target t, ``steps`` sign steps of ``step_size`` from a uniform start in
the ε-ball *minimise* the cosine distance 1 − cos(z(x′), z(t)) between the penultimate
features (models/base.py's ``embed``: the input of the final classifier, so FN-invariant),
each iterate projected onto the ε-ball and clamped to [0, 1]. x counts as broken iff one of
its targets' runs is misclassified (the repository's "at least one misclassified"); runs
stop for an image once one has succeeded, which does not change that count.
The targets come from the whole evaluated test subset (``evaluate``); a direct call draws
them from the batch itself. The draws use the evaluation's generator, so they repeat.
Arguments (defaults, the repository's ``config_feature_attack`` on [−1, 1] images, rescaled to
[0, 1]: ε 16/255 → 8/255, step 2/255 → 1/255): eps ("8/255"), step_size ("1/255"),
steps (100), n_targets (100), random_start (True), bn_mode ("eval").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import ATTACKS
from ..errors import SpecError
from ..models.base import embed
from .base import Attack, check_budget, model_mode, number


@ATTACKS.register("feature_attack")
@dataclass(repr=False)
class FeatureAttack(Attack):
    eps: float | str = "8/255"
    step_size: float | str = "1/255"
    steps: int = 100
    n_targets: int = 100
    random_start: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.eps, self.step_size = number(self.eps), number(self.step_size)
        check_budget(self.eps, self.step_size, True, (0.0, 1.0))
        if self.steps < 1 or self.n_targets < 1 or self.bn_mode.value != "eval":
            raise SpecError(f"feature_attack: steps and n_targets ≥ 1, bn_mode eval; got {self.steps}, "
                            f"{self.n_targets}, {self.bn_mode.value}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return embed(self.model, x)[0].float()

    def _run(self, x, z_target, g):
        x_adv = x + (torch.rand(x.shape, device=x.device, generator=g) * 2 - 1) * self.eps if self.random_start else x
        x_adv = x_adv.clamp(0, 1)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = (1 - F.cosine_similarity(self.features(x_adv), z_target, dim=1)).sum()
            grad, = torch.autograd.grad(loss, x_adv)
            x_adv = torch.min(torch.max(x_adv.detach() - self.step_size * grad.sign(), x - self.eps), x + self.eps)
            x_adv = x_adv.clamp(0, 1)
        return x_adv.detach()

    def perturb(self, x, y, generator=None, pool=None):
        """x′ for the batch: the first target run that fools the model, else the last run.
        ``pool`` = (target features, target labels); default: the batch itself."""
        x = x.detach()
        if pool is None:
            with torch.no_grad():
                pool = (self.features(x), y)
        z_pool, y_pool = pool
        k = min(self.n_targets, len(y_pool))
        scores = torch.rand(len(y), len(y_pool), device=x.device, generator=generator)
        scores = scores.masked_fill(y[:, None] == y_pool[None, :], -1.0)   # other classes only
        ranked = scores.topk(k, dim=1)
        targets = ranked.indices
        best = x.clone()
        active = torch.ones(len(y), dtype=torch.bool, device=x.device)
        for t in range(k):
            valid = active & (ranked.values[:, t] >= 0)
            idx = valid.nonzero().flatten()
            if idx.numel() == 0:
                continue
            cand = self._run(x[idx], z_pool[targets[idx, t]], generator)
            with torch.no_grad():
                fooled = self.model(cand).argmax(1) != y[idx]
            best[idx] = cand   # the last run, or the one that fools the model
            active[idx[fooled]] = False
        return best

    def evaluate(self, loader, seed: int = 0, progress=None):
        from ..data.loader import epoch_generator

        g = epoch_generator(loader.device, seed, 0, stream=1)
        with model_mode(self.model, False), torch.no_grad():
            feats, labels = zip(*[(self.features(x), y) for x, y in loader.batches()])
        pool = (torch.cat(feats), torch.cat(labels))
        clean = torch.zeros((), device=loader.device, dtype=torch.long)
        robust = torch.zeros((), device=loader.device, dtype=torch.long)
        for x, y in loader.batches():
            with model_mode(self.model, False):
                with torch.no_grad():
                    ok = self.model(x).argmax(1) == y
                with torch.enable_grad():
                    x_adv = self.perturb(x, y, g, pool)
                with torch.no_grad():
                    ok_adv = ok & (self.model(x_adv).argmax(1) == y)
            clean += ok.sum()
            robust += ok_adv.sum()
            if progress is not None:
                progress.update(1)
        n = loader.n
        return {"n": n, "clean": 100.0 * clean.item() / n, "robust": 100.0 * robust.item() / n}
