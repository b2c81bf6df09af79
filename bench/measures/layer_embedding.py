"""Layer embeddings of natural, adversarial and friendly adversarial data, with measures of
how mixed the classes are (FAT: Zhang et al., ICML 2020, Sec. 4.2 and App. C: Figs. 3, 11, 12).

What it measures: the outputs of numbered layers of the evaluated model (eval mode) on the
test examples of the chosen classes (natural), on their PGD-K examples (adversarial: the
configured ``attack``) and on their PGD-K-τ examples (friendly: the same attack early-stopped
with ``tau``, ``bench/attacks/pgd_es.py``; the paper's "PGD-20-0"), both drawn with the same
seed, so from the same random start. For each layer:
  2-D embeddings: PCA fitted on the natural outputs and applied to all three kinds (the
      paper's panels share one projection), and t-SNE (scikit-learn; PCA to 50 dimensions
      first, perplexity ``perplexity`` or (n − 1)/3 if fewer points, seed ``seed``) of the three
      kinds jointly, then split by kind;
  in each space (``full``: the flattened layer output; ``pca``; ``tsne``):
    purity.<space>.layer<k>.<kind>: the mean share of each point's ``neighbours`` nearest
        points of the same kind that have its class (100: classes apart; 100/C: mixed);
    crossover.<space>.layer<k>.<kind>: the share (%) of points whose ``neighbours`` nearest
        natural points are mostly of another class (the paper's adversarial data "located at
        their peer's (natural data) area", Sec. 1); for the natural kind, leave-one-out.
Layer numbers (A18 of the FAT inventory; the paper gives only counts):
  Small CNN ("8-layer … 6 convolutional layers and 2 fully-connected layers"): #1–#6 the
      convolutions after BatchNorm and ReLU (before pooling), #7 fc1 after ReLU, #8 the logits;
  Wide ResNet (WRN-40-4 "totally 41 layers"): the weighted layers in module order: #1 the stem
      convolution, then per block conv1, conv2 and, in a stage's first block, the 1×1 shortcut;
      the last is the classifier. A conv1 gives the block's inner activation ReLU(BN(conv1)),
      a conv2 or shortcut the block's output after the residual addition (#38 and #40 of
      WRN-40-4: the 5th and 6th blocks of the last stage), the classifier the logits.
  :func:`layer_outputs` reads them with forward hooks; the models' forwards are unchanged.
Arguments (defaults): layers ([7]), attack (PGD-20, ε = 0.031, step 0.007, uniform start, CE,
eval-mode BN: App. C), tau (0), classes (None: every class of the model; else labels to keep,
Fig. 12: deer, horse, truck = [4, 7, 9]), neighbours (10), perplexity (30.0), seed (0).
Input range [0, 1]. Result: n, classes, the metrics above, ``points`` (per layer and 2-D space,
per kind: x and y lists) and ``labels`` (test order), the attacks' resolved parameters.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import build as build_attack
from ..attacks.base import model_mode
from ..errors import BenchError
from . import MEASURES
from .base import Measure

DEFAULT_ATTACK = {"name": "pgd", "norm": "linf", "eps": 0.031, "step_size": 0.007, "steps": 20,
                  "random_start": "uniform", "loss": "ce", "bn_mode": "eval"}
KINDS = ("natural", "adversarial", "friendly")


def numbered_layers(model: nn.Module) -> dict[int, tuple[str, bool]]:
    """Layer number → (module name whose output it is, whether ReLU follows), per family."""
    from ..models.small_cnn import SmallCNN
    from ..models.wide_resnet import WideResNet

    if isinstance(model, SmallCNN):
        out = {2 * (b - 1) + k: (f"batchnorm{b}_{k}", True) for b in (1, 2, 3) for k in (1, 2)}
        return {**out, 7: ("fc1", True), 8: ("fc2", False)}
    if isinstance(model, WideResNet):
        out, n = {1: ("conv1", False)}, 2
        for i, block in enumerate(model.layers):
            out[n], out[n + 1] = (f"layers.{i}.bn2", True), (f"layers.{i}", False)
            n += 2
            if block.shortcut is not None:
                out[n] = (f"layers.{i}", False)
                n += 1
        out[n] = ("linear", False)
        return out
    raise BenchError(f"layer numbering is defined for small_cnn and wide_resnet, not {type(model).__name__}")


def layer_outputs(model: nn.Module, x: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
    """The outputs of the numbered ``layers`` on ``x`` (flattened per example, float32), read
    with forward hooks in one forward pass (eval mode, no gradients)."""
    table = numbered_layers(model)
    bad = [k for k in layers if k not in table]
    if bad:
        raise BenchError(f"{type(model).__name__} has layers #1–#{max(table)}, not {bad}")
    modules = dict(model.named_modules())
    out: dict[int, torch.Tensor] = {}
    hooks = []
    for k in layers:
        name, relu = table[k]

        def hook(_m, _inp, o, k=k, relu=relu):
            out[k] = (F.relu(o) if relu else o).detach().float().flatten(1)

        hooks.append(modules[name].register_forward_hook(hook))
    try:
        with model_mode(model, False), torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def _knn(query: torch.Tensor, ref: torch.Tensor, k: int, same: bool) -> torch.Tensor:
    """Indices of the k nearest rows of ``ref`` for each row of ``query`` (excluding itself
    when ``same``), in chunks."""
    k = min(k, len(ref) - int(same))
    idx = []
    for q in query.split(1024):
        d = torch.cdist(q.double(), ref.double())
        if same:
            start = sum(len(c) for c in idx)
            d[torch.arange(len(q)), torch.arange(start, start + len(q))] = float("inf")
        idx.append(d.topk(k, largest=False).indices)
    return torch.cat(idx)


def mixing(points: dict[str, torch.Tensor], labels: torch.Tensor, k: int) -> dict[str, dict[str, float]]:
    """kNN purity (within each kind) and cross-over rate (against the natural points), in %."""
    nat = points["natural"]
    n_cls = int(labels.max()) + 1
    purity, crossover = {}, {}
    for kind, z in points.items():
        nb = labels[_knn(z, z, k, same=True)]
        purity[kind] = 100.0 * (nb == labels[:, None]).double().mean().item()
        nn_nat = labels[_knn(z, nat, k, same=kind == "natural")]
        votes = F.one_hot(nn_nat, n_cls).sum(1)
        own = votes.gather(1, labels[:, None]).squeeze(1)
        crossover[kind] = 100.0 * (own * 2 <= votes.sum(1)).double().mean().item()   # not a majority of its class
    return {"purity": purity, "crossover": crossover}


@MEASURES.register("layer_embedding")
class LayerEmbedding(Measure):
    """PCA / t-SNE of numbered layers on natural, PGD-K and PGD-K-τ data, with mixing measures."""

    name = "layer_embedding"
    defaults = {"layers": [7], "attack": DEFAULT_ATTACK, "tau": 0, "classes": None, "neighbours": 10,
                "perplexity": 30.0, "seed": 0}

    @classmethod
    def validate(cls, params: dict[str, Any]) -> None:
        from ..errors import SpecError

        if not params["layers"] or not all(isinstance(k, int) and k >= 1 for k in params["layers"]):
            raise SpecError(f"layer_embedding: layers must be layer numbers ≥ 1, got {params['layers']}")
        if params["classes"] is not None and (len(params["classes"]) < 2 or not all(
                isinstance(c, int) and c >= 0 for c in params["classes"])):
            raise SpecError(f"layer_embedding: classes must be ≥ 2 labels, got {params['classes']}")
        if params["tau"] < 0 or params["neighbours"] < 1:
            raise SpecError("layer_embedding: tau ≥ 0 and neighbours ≥ 1")

    def evaluate(self, loader, seed: int = 0, progress=None) -> dict[str, Any]:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        from ..data.loader import epoch_generator

        attacks = {"adversarial": build_attack({"bn_mode": "eval", **self.attack}, self.model),
                   "friendly": build_attack({"bn_mode": "eval", **self.attack, "name": "pgd_es", "tau": self.tau},
                                            self.model)}
        gens = {kind: epoch_generator(loader.device, seed, 0, stream=1) for kind in attacks}   # the same starts
        feats: dict[str, dict[int, list[torch.Tensor]]] = {kind: {k: [] for k in self.layers} for kind in KINDS}
        labels = []
        for x, y in loader.batches():
            if self.classes is not None:
                keep = torch.isin(y, torch.tensor(self.classes, device=y.device))
                x, y = x[keep], y[keep]
            if len(y):
                inputs = {"natural": x, **{kind: a(x, y, gens[kind]) for kind, a in attacks.items()}}
                for kind, xi in inputs.items():
                    for k, v in layer_outputs(self.model, xi, self.layers).items():
                        feats[kind][k].append(v.cpu())
                labels.append(y.cpu())
            if progress is not None:
                progress.update(1)
        if not labels:
            raise BenchError(f"layer_embedding: no test example of classes {self.classes}")
        y = torch.cat(labels)
        classes = self.classes if self.classes is not None else sorted(set(y.tolist()))
        y_idx = torch.tensor([classes.index(c) for c in y.tolist()])   # 0…C−1 for the measures
        n = len(y)
        result: dict[str, Any] = {"n": n, "classes": classes, "labels": y.tolist(), "points": {},
                                  "purity": {}, "crossover": {}}
        for k in self.layers:
            full = {kind: torch.cat(feats[kind][k]) for kind in KINDS}
            spaces = {"full": full}
            pca = PCA(n_components=2, random_state=self.seed).fit(full["natural"].numpy())
            spaces["pca"] = {kind: torch.from_numpy(pca.transform(z.numpy())) for kind, z in full.items()}
            joint = torch.cat([full[kind] for kind in KINDS]).numpy()
            if joint.shape[1] > 50 and len(joint) > 50:
                joint = PCA(n_components=50, random_state=self.seed).fit_transform(joint)
            perplexity = min(float(self.perplexity), (len(joint) - 1) / 3)
            emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=self.seed).fit_transform(joint)
            spaces["tsne"] = {kind: torch.from_numpy(emb[i * n:(i + 1) * n]) for i, kind in enumerate(KINDS)}
            for space, pts in spaces.items():
                m = mixing(pts, y_idx, self.neighbours)
                for metric in ("purity", "crossover"):
                    result[metric].setdefault(space, {})[f"layer{k}"] = m[metric]
                if space != "full":
                    result["points"].setdefault(f"layer{k}", {})[space] = {
                        kind: {"x": p[:, 0].tolist(), "y": p[:, 1].tolist()} for kind, p in pts.items()}
        result["attacks"] = {kind: {"name": self.attack["name"] if kind == "adversarial" else "pgd_es",
                                    **a.params()} for kind, a in attacks.items()}
        result["tsne"] = {"perplexity": self.perplexity, "seed": self.seed, "pca_dims": 50}
        return result
