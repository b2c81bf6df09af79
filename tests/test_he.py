"""HE (Pang et al., NeurIPS 2020): the hypersphere-embedding head, the frameworks with and
without it, the new attacks (each against an independent implementation or a known answer),
the Fig. 3 probe, the streamed ImageNet data, the spec's plan and transcription, and one small
smoke build. Fast tier, CPU."""
from __future__ import annotations

import copy
import csv
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks import build as build_attack
from bench.errors import SpecError
from bench.methods import METHODS
from bench.models import build, check_head
from bench.models.base import HypersphereHead, embed, final_layer, loss_params


HE = {"fn": True, "wn": "projection", "s": 15, "m": 0.2}
EPS = 8 / 255


def wrn(head=None, seed=0):
    torch.manual_seed(seed)
    return build({"name": "wide_resnet", "depth": 10, "widen": 1, **({"head": head} if head else {})}, 10)


def batch(n=8, shape=(3, 32, 32), seed=0, classes=10):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


class Linear(nn.Module):
    """A linear classifier on flattened images: its decision boundaries are known."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(w), self.linear.bias.copy_(b)

    def forward(self, x):
        return self.linear(x.flatten(1))


def linear_problem(seed=0, d=12, k=3, n=6):
    """A random linear model on 1×(d/4)×2×2 images in the middle of the box, with each
    example's exact ℓ∞ and ℓ2 distances to its nearest decision boundary."""
    g = torch.Generator().manual_seed(seed)
    w, b = torch.randn(k, d, generator=g), torch.randn(k, generator=g) * 0.1
    model = Linear(w, b).eval()
    x = 0.5 + 0.02 * torch.randn(n, d // 4, 2, 2, generator=g)
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    gap = z.gather(1, y[:, None]) - z                         # f_y − f_j ≥ 0
    dw = w[y][:, None, :] - w[None, :, :]
    l1, l2 = dw.abs().sum(-1), dw.norm(dim=-1)
    mask = F.one_hot(y, k).bool()
    linf = (gap / l1.clamp_min(1e-12)).masked_fill(mask, math.inf).min(1).values
    dist2 = (gap / l2.clamp_min(1e-12)).masked_fill(mask, math.inf).min(1).values
    return model, x, y, linf, dist2


# ---- the head --------------------------------------------------------------------------------

def test_head_off_is_the_linear_layer_and_fn_wn_gives_cosines():
    torch.manual_seed(0)
    z = torch.randn(5, 16)
    plain, off = nn.Linear(16, 4), HypersphereHead(16, 4)
    off.load_state_dict(plain.state_dict())
    assert torch.allclose(plain(z), off(z))
    he = HypersphereHead(16, 4, fn=True, wn="projection", s=15, m=0.2)
    assert he.bias is None                                   # "no bias vector b exists in f̃(x)" (Eq. 5)
    w0 = he.weight.detach().clone()
    cos = F.normalize(z, dim=1) @ F.normalize(w0, dim=1).T
    assert torch.allclose(he(z), cos, atol=1e-6)             # s and m never enter the output
    assert torch.allclose(he.weight.norm(dim=1), torch.ones(4))   # the code's projection writes W̃
    mhe = HypersphereHead(16, 4, fn=True, wn="reparam", mhe=True)
    out = mhe(z)
    assert torch.allclose(out, -torch.acos(F.normalize(z, dim=1) @ F.normalize(mhe.weight, dim=1).T), atol=1e-5)
    out.sum().backward()                                     # reparam: gradients flow through the normalisation
    assert mhe.weight.grad is not None and mhe.weight.grad.abs().sum() > 0
    fn_only = HypersphereHead(16, 4, fn=True)
    assert fn_only.bias is None and torch.allclose(fn_only(z), F.normalize(z, dim=1) @ fn_only.weight.T)


def test_loss_params_give_cosface_logits_and_the_plain_model_none():
    model = wrn(HE)
    p = loss_params(model)
    assert (p.s, p.m) == (15.0, 0.2) and loss_params(wrn()) == loss_params(build("lenet", 10, 1))
    out, y = torch.rand(4, 10) * 2 - 1, torch.tensor([0, 3, 9, 3])
    expect = 15 * (out - 0.2 * F.one_hot(y, 10))             # Eq. 6
    assert torch.allclose(p.margin_logits(out, y), expect)
    assert torch.equal(loss_params(wrn()).margin_logits(out, y), out)


def test_head_options_are_checked_at_plan_time():
    for bad, why in [({"fm": True}, "no option"), ({"wn": "sphere"}, "wn must be"), ({"s": 0}, "positive"),
                     ({"fn": True, "mhe": True}, "needs fn and wn")]:
        with pytest.raises(SpecError, match=why):
            check_head(bad)


@pytest.mark.parametrize("family", [{"name": "resnet", "blocks": [1, 1, 1, 1], "width": 8},
                                    {"name": "preact_resnet", "blocks": [1, 1, 1, 1], "width": 8},
                                    {"name": "wide_resnet", "depth": 10, "widen": 1}])
def test_every_family_carries_the_head_and_embed_returns_its_input(family):
    torch.manual_seed(0)
    model = build({**family, "head": HE}, 10).eval()
    x, _ = batch(4)
    z, out = embed(model, x)
    head = final_layer(model)
    assert isinstance(head, HypersphereHead) and z.shape == (4, head.in_features)
    assert torch.allclose(out, head(z), atol=1e-6) and out.abs().max() <= 1 + 1e-6


def test_imagenet_family_is_torchvisions_resnet_parameter_for_parameter():
    import torchvision

    for alias, ref in (("imagenet_resnet50", torchvision.models.resnet50),
                       ("imagenet_wide_resnet50_2", torchvision.models.wide_resnet50_2)):
        ours = {k: v.shape for k, v in build(alias, 1000).state_dict().items()}
        assert ours == {k: v.shape for k, v in ref().state_dict().items()}, alias
    tiny = build({"name": "imagenet_resnet50", "layers": [1, 1, 1, 1], "width": 8, "head": {**HE, "s": 10}}, 1000)
    z, out = embed(tiny.eval(), torch.rand(1, 3, 224, 224))
    assert z.shape == (1, 8 * 8 * 4) and out.shape == (1, 1000) and loss_params(tiny).s == 10


# ---- the frameworks --------------------------------------------------------------------------

ATTACK = {"eps": "8/255", "step_size": "2/255", "steps": 2, "random_start": "normal", "clamp_start": False}


@pytest.mark.parametrize("name,params", [("pgd_at", {}), ("trades", {"beta": 6.0}), ("alp", {})])
def test_he_with_s1_m0_and_fn_wn_off_is_the_plain_objective(name, params):
    plain = wrn()
    off = build({"name": "wide_resnet", "depth": 10, "widen": 1, "head": {"s": 1, "m": 0.0}}, 10)
    off.load_state_dict(plain.state_dict())
    x, y = batch()
    losses, grads = [], []
    for model in (plain, off):
        method = METHODS.get(name)(model, dict(ATTACK), **params)
        loss, _ = method.loss(x, y, torch.Generator().manual_seed(1))
        losses.append(loss.item())
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_pgd_at_he_is_eq6_on_an_attack_that_sees_s():
    model = wrn(HE).eval()   # eval: the attack's BatchNorm statistics do not move between the two calls
    method = METHODS.get("pgd_at")(model, dict(ATTACK))
    assert method.attack.params()["logit_scale"] == 15 and method.attack.params()["margin"] == 0
    paper = METHODS.get("pgd_at")(model, {**ATTACK, "logit_scale": 1})   # Table 1's L_A: the recipe's choice
    assert paper.attack.params()["logit_scale"] == 1
    x, y = batch()
    loss, _ = method.loss(x, y, torch.Generator().manual_seed(1))
    x_adv = method.attack(x, y, torch.Generator().manual_seed(1))
    expect = F.cross_entropy(15 * (model(x_adv) - 0.2 * F.one_hot(y, 10)), y)
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)


def test_trades_he_scales_the_kl_and_alp_pairs_unscaled_cosines():
    model = wrn(HE).eval()
    x, y = batch()
    trades = METHODS.get("trades")(model, dict(ATTACK), beta=6.0, repeat_clean_forward=False)
    terms, _ = trades.objective(x, y, torch.Generator().manual_seed(2))
    x_adv = trades.attack(x, y, torch.Generator().manual_seed(2))
    cos, cos_adv = model(x), model(x_adv)
    assert terms["natural"].item() == pytest.approx(F.cross_entropy(15 * (cos - 0.2 * F.one_hot(y, 10)), y).item(),
                                                    rel=1e-5)
    kl = F.kl_div(F.log_softmax(15 * cos_adv, 1), F.softmax(15 * cos, 1), reduction="sum") / len(y)
    assert terms["robust"].item() == pytest.approx(6.0 * kl.item(), rel=1e-3)
    alp = METHODS.get("alp")(model, dict(ATTACK), pairing="l2")
    terms, _ = alp.objective(x, y, torch.Generator().manual_seed(2))
    x_adv = alp.attack(x, y, torch.Generator().manual_seed(2))
    cos, cos_adv = model(x), model(x_adv)
    assert terms["pairing"].item() == pytest.approx(0.5 * (cos - cos_adv).norm(dim=1).mean().item(), rel=1e-5)
    assert terms["robust"].item() == pytest.approx(
        0.5 * F.cross_entropy(15 * (cos_adv - 0.2 * F.one_hot(y, 10)), y).item(), rel=1e-5)
    with pytest.raises(SpecError, match="pairing"):
        METHODS.get("alp").check_params({"pairing": "l1"})


def test_fast_at_is_pgd_at_with_one_random_start_fgsm_step_in_train_mode():
    model = wrn()
    fast = METHODS.get("fast_at")(model, {"eps": "8/255"})
    p = fast.attack.params()
    assert (p["alpha"], p["bn_mode"]) == (pytest.approx(10 / 255), "train")
    ref = METHODS.get("pgd_at")(copy.deepcopy(model), {"eps": "8/255", "step_size": "10/255", "steps": 1,
                                                       "random_start": "uniform", "bn_mode": "train"})
    x, y = batch()
    a, _ = fast.loss(x, y, torch.Generator().manual_seed(3))
    b, _ = ref.loss(x, y, torch.Generator().manual_seed(3))
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


# ---- the training loop: FreeAT's replays, FastAT's single step -----------------------------------

def _cfg(method, model=None, epochs=2, **extra):
    from test_training import CONFIG

    return {**CONFIG, "epochs": epochs, "data": {"source": "synthetic", "synthetic_size": [96, 32]},
            "batch_size": 32, "model": model or {"name": "wide_resnet", "depth": 10, "widen": 1},
            "method": method, "attack": {}, "schedule": {"name": "cyclic", "pct_start": 0.5},
            "selection": {"metric": "last", "n_test": 32}, **extra}


def test_free_at_takes_m_updates_per_batch_keeps_delta_and_resumes_exactly(tmp_path, monkeypatch):
    import bench.train as loop
    from bench.fileio import read_json
    from bench.train import train

    cfg = _cfg({"name": "free_at", "replays": 3, "eps": "8/255"}, {"name": "wide_resnet", "depth": 10, "widen": 1,
                                                                  "head": HE})
    train("a", cfg, tmp_path / "a", progress=False)
    state = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    assert state["scheduler"]["last_epoch"] == 2 * 3 * 3              # epochs × batches × replays
    delta = state["method"]["delta"]
    assert delta.shape == (32, 3, 32, 32) and 0 < delta.abs().max() <= EPS + 1e-6
    real_log = loop.log

    def stop(msg):
        real_log(msg)
        if "epoch 1/2" in msg:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "log", stop)
    with pytest.raises(KeyboardInterrupt):
        train("a", cfg, tmp_path / "b", progress=False)
    monkeypatch.setattr(loop, "log", real_log)
    train("a", cfg, tmp_path / "b", progress=False)                   # resumes with the saved δ
    wa = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert read_json(tmp_path / "a" / "metrics.json")[-1]["loss"] == read_json(tmp_path / "b" / "metrics.json")[-1]["loss"]


def test_free_at_with_zero_step_is_plain_training_replayed(tmp_path):
    from bench.train import train

    free = train("f", _cfg({"name": "free_at", "replays": 2, "eps": "8/255", "step": 0.0}, epochs=1), tmp_path / "f",
                 progress=False)
    std = train("s", _cfg({"name": "_replayed_standard"}, epochs=1), tmp_path / "s", progress=False)
    wf = torch.load(tmp_path / "f" / "last.pt", weights_only=True)["model"]
    ws = torch.load(tmp_path / "s" / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(wf[k], ws[k], atol=1e-6) for k in wf)
    assert free["final"]["loss"] == pytest.approx(std["final"]["loss"], rel=1e-5)


from bench.methods.base import Method, accuracy  # noqa: E402


@METHODS.register("_replayed_standard")
class ReplayedStandard(Method):
    """Clean CE, each batch stepped twice: FreeAT with a zero step, written independently."""
    name = "_replayed_standard"

    @property
    def updates_per_batch(self):
        return 2

    def train_step(self, x, y, generator, update):
        total = 0.0
        for _ in range(2):
            logits = self.logits(x)
            loss = F.cross_entropy(logits, y)
            update(loss, x, y)
            total = total + loss.detach()
        return {"loss": total / 2, "adv_acc": accuracy(logits, y)}


# ---- the attacks -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def he_model():
    """A small HE model (FN + WN) trained briefly on synthetic data, with test images."""
    from bench.data import load
    from bench.data.loader import DeviceLoader

    torch.manual_seed(0)
    data = load("cifar10", source="synthetic", synthetic_size=(256, 64))
    model = build({"name": "resnet", "blocks": [1, 1, 1, 1], "width": 8, "head": HE}, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    p = loss_params(model)
    for epoch in range(6):
        for x, y in DeviceLoader(data.train, 64, torch.device("cpu"), shuffle=True).batches(0, epoch):
            loss = F.cross_entropy(p.margin_logits(model(x), y), y)
            opt.zero_grad(), loss.backward(), opt.step()
    model.eval()
    return model, data.test.x[:32].float() / 255, data.test.y[:32]


def _reference_pgd(forward, x, y, eps, alpha, steps, g):
    """A plain PGD (uniform start, CE on ``forward``'s output), written independently."""
    x_adv = (x + (torch.rand(x.shape, generator=g) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.clone().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(forward(x_adv), y, reduction="sum"), x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv


def test_pgd_logit_scale_and_margin_is_pgd_on_the_training_logits(he_model):
    model, x, y = he_model
    ours = build_attack({"name": "pgd", "eps": 0.031, "step_size": 0.003, "steps": 5, "logit_scale": 15, "margin": 0.2},
                 model)(x, y, torch.Generator().manual_seed(4))
    ref = _reference_pgd(lambda v: 15 * (model(v) - 0.2 * F.one_hot(y, 10)), x, y, 0.031, 0.003, 5,
                         torch.Generator().manual_seed(4))
    assert torch.allclose(ours, ref, atol=1e-6)
    with pytest.raises(SpecError, match="margin"):
        build_attack({"name": "pgd", "loss": "kl", "margin": 0.1}, model)


def test_pgd_fn_normalises_the_feature_of_a_standard_model(trained):
    model, x, y = trained
    x, y = x[:16], y[:16]
    layer = final_layer(model)
    ours = build_attack({"name": "pgd_fn", "eps": 0.031, "step_size": 0.003, "steps": 2}, model)(
        x, y, torch.Generator().manual_seed(5))
    fn_logits = lambda v: F.normalize(embed(model, v)[0], dim=1) @ layer.weight.T + layer.bias   # Eq. 12 with b
    ref = _reference_pgd(fn_logits, x, y, 0.031, 0.003, 2, torch.Generator().manual_seed(5))
    assert torch.allclose(ours, ref, atol=1e-6)
    plain = build_attack({"name": "pgd", "eps": 0.031, "step_size": 0.003, "steps": 2}, model)(
        x, y, torch.Generator().manual_seed(5))
    assert not torch.allclose(ours, plain)


def test_pgd_fn_on_an_fn_head_is_plain_pgd(he_model):
    model, x, y = he_model   # FN + WN: normalising z̃ again changes nothing (the bias is absent)
    model = copy.deepcopy(model)
    final_layer(model).wn = "reparam"
    with torch.no_grad():
        final_layer(model).weight.copy_(F.normalize(final_layer(model).weight, dim=1))
    a = build_attack({"name": "pgd_fn", "steps": 3}, model)(x, y, torch.Generator().manual_seed(6))
    b = build_attack({"name": "pgd", "steps": 3}, model)(x, y, torch.Generator().manual_seed(6))
    assert torch.allclose(a, b, atol=1e-6)


def test_mim_agrees_with_torchattacks(trained):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = trained
    x, y = x[:32], y[:32]
    ref = torchattacks.MIFGSM(model, eps=0.031, alpha=0.003, steps=20, decay=1.0)(x, y)
    ours = build_attack({"name": "mim", "eps": 0.031, "step_size": 0.003, "steps": 20}, model)(x, y)
    assert torch.allclose(ours, ref, atol=1e-6)
    with pytest.raises(SpecError, match="random_start none"):
        build_attack({"name": "mim", "random_start": "uniform"}, model)


def test_fgsm_rs_is_one_step_from_a_uniform_start(trained):
    model, x, y = trained
    x, y = x[:16], y[:16]
    ours = build_attack({"name": "fgsm_rs", "eps": "8/255", "alpha": "10/255"}, model)(x, y, torch.Generator().manual_seed(7))
    ref = _reference_pgd(model, x, y, EPS, 10 / 255, 1, torch.Generator().manual_seed(7))
    assert torch.allclose(ours, ref, atol=1e-6)


def _robust(attack, model, x, y):
    x_adv = attack(x, y, torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= attack.params()["eps"] + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def test_deepfool_linf_finds_the_exact_boundary_of_a_linear_model():
    model, x, y, linf, _ = linear_problem(0)
    below = _robust(build_attack({"name": "deepfool", "eps": float(linf.min()) * 0.98}, model), model, x, y)
    assert below.all()                                            # nothing is adversarial below the distance
    for i in range(len(y)):                                       # and just above it, DeepFool's step crosses
        eps = float(linf[i]) * 1.02
        assert not _robust(build_attack({"name": "deepfool", "eps": eps}, model), model, x[i:i + 1], y[i:i + 1]).any()


def test_fab_finds_the_exact_linf_boundary_of_a_linear_model():
    model, x, y, linf, _ = linear_problem(1)
    for i in range(len(y)):
        for factor, robust in ((0.97, True), (1.03, False)):
            res = _robust(build_attack({"name": "fab", "eps": float(linf[i]) * factor, "n_iter": 20}, model), model,
                          x[i:i + 1], y[i:i + 1])
            assert bool(res.all()) is robust, (i, factor)


def test_cw_counts_its_l2_adversarial_by_its_linf_size():
    model, x, y, _, dist2 = linear_problem(2)
    attack = build_attack({"name": "cw", "eps": 1.0, "binary_search_steps": 5, "steps": 200}, model)
    x_adv = attack(x, y)
    d2 = (x_adv - x).flatten(1).norm(dim=1)
    with torch.no_grad():
        assert (model(x_adv).argmax(1) != y).all()
    assert (d2 >= dist2 * 0.99).all() and (d2 <= dist2 * 1.25).all()   # near the minimal ℓ2 perturbation
    linf = (x_adv - x).flatten(1).abs().amax(1)
    tight = build_attack({"name": "cw", "eps": float(linf.min()) * 0.5, "binary_search_steps": 5, "steps": 200}, model)
    assert _robust(tight, model, x, y).all()                           # larger than ε in ℓ∞: not counted


def test_rays_converges_to_the_linf_distance_of_a_linear_model():
    model, x, y, linf, _ = linear_problem(3)
    with torch.no_grad():   # ε = 0: nothing stops early, the search runs its 3000 queries
        x_adv = build_attack({"name": "rays", "eps": 0.0, "queries": 3000}, model).search(x, y)
    found = (x_adv - x).flatten(1).abs().amax(1)
    assert torch.allclose(found, linf, rtol=0.02), (found, linf)      # the hard-label search reaches the boundary
    assert _robust(build_attack({"name": "rays", "eps": float(linf.min()) * 0.95, "queries": 3000}, model), model, x, y).all()


def test_zoo_finds_a_near_minimal_l2_adversarial_with_arts_adam_step():
    model, x, y, _, dist2 = linear_problem(4, n=4)
    attack = build_attack({"name": "zoo", "queries": 6000, "initial_const": 10.0, "learning_rate": 0.01}, model)
    with torch.no_grad():
        adv = attack.search(x, y, torch.Generator().manual_seed(0))
        fooled = model(adv).argmax(1) != y
    d2 = (adv - x).flatten(1).norm(dim=1)
    assert fooled.all() and (d2 >= dist2 * 0.99).all() and (d2 <= dist2 * 1.5).all(), (d2, dist2)
    art = pytest.importorskip("art.attacks.evasion")   # the coordinate Adam step against ART's (a test oracle)
    from types import SimpleNamespace

    import numpy as np
    from bench.attacks.zoo import adam_coordinate

    g = np.random.default_rng(0)
    losses, index = g.normal(size=6), np.array([3, 0, 7])
    mean, var, noise = g.normal(size=10) * 0.1, g.random(10) * 0.1, g.normal(size=10) * 0.01
    epochs = np.array([1, 4, 2, 3, 1, 1, 1, 2, 5, 1])
    dummy = SimpleNamespace(variable_h=1e-4, estimator=SimpleNamespace(clip_values=None))
    expect = art.ZooAttack._optimizer_adam_coordinate(dummy, losses, index, mean.copy(), var.copy(), noise.copy(),
                                                      0.01, epochs.copy(), False)
    t = lambda a: torch.tensor(a, dtype=torch.float64)[None].repeat(3, 1)
    delta, m, v, ep = t(noise), t(mean), t(var), t(epochs.astype(float))
    grads = torch.tensor([(losses[i] - losses[i + 1]) / 2e-4 for i in range(0, 6, 2)], dtype=torch.float64)
    adam_coordinate(delta, m, v, ep, torch.arange(3), torch.tensor(index), grads, 0.01,
                    torch.full_like(delta, -1e9), torch.full_like(delta, 1e9))
    for r, i in enumerate(index):
        assert delta[r, i].item() == pytest.approx(expect[i], rel=1e-9)


def test_spsa_and_nes_estimate_the_margin_gradient_and_read_every_checkpoint():
    g = torch.Generator().manual_seed(0)
    model = Linear(torch.randn(5, 48, generator=g), torch.zeros(5))
    x, y = torch.rand(4, 3, 4, 4, generator=g), torch.tensor([0, 1, 2, 3])
    for name in ("spsa", "nes"):
        attack = build_attack({"name": name, "samples": 4096, "chunk": 1024}, model)
        est = attack.estimate(x, y, torch.Generator().manual_seed(1))
        xr = x.clone().requires_grad_(True)
        true, = torch.autograd.grad(attack.margin(xr, y).sum(), xr)   # ∇ (Z_y − max_{i≠y} Z_i)
        assert (F.cosine_similarity(est.flatten(1), true.flatten(1)) > 0.95).all(), name
    from bench.data.loader import DeviceLoader
    from bench.data.store import Split

    model, xs, ys = linear_problem(5, n=8)[:3]
    loader = DeviceLoader(Split((xs * 255).round().to(torch.uint8), ys), 8, torch.device("cpu"))
    res = build_attack({"name": "spsa", "eps": 0.5, "iterations": 20, "checkpoints": [2, 5, 20], "samples": 16},
                       model).evaluate(loader)
    assert res["clean"] >= res["at"]["2"] >= res["at"]["5"] >= res["at"]["20"] == res["robust"]
    assert res["robust"] < res["clean"]


def test_feature_attack_matches_the_repositorys_loop_per_image(trained):
    model, x, y = trained
    x, y = x[:6], y[:6]
    attack = build_attack({"name": "feature_attack", "eps": EPS, "steps": 5, "n_targets": 3, "random_start": False}, model)
    x_adv = attack(x, y, torch.Generator().manual_seed(8))
    feat = lambda v: embed(model, v)[0]
    with torch.no_grad():
        pool = feat(x)
    scores = torch.rand(6, 6, generator=torch.Generator().manual_seed(8)).masked_fill(y[:, None] == y[None, :], -1)
    ranked = scores.topk(3, dim=1)
    for i in range(6):   # Line290/FeatureAttack: for each target, descend the cosine distance; first success wins
        for t in range(3):
            if ranked.values[i, t] < 0:
                continue
            xi = x[i:i + 1].clone()
            for _ in range(5):
                xi.requires_grad_(True)
                loss = 1 - F.cosine_similarity(feat(xi), pool[ranked.indices[i, t]][None])
                grad, = torch.autograd.grad(loss.sum(), xi)
                xi = torch.min(torch.max(xi.detach() - grad.sign() / 255, x[i:i + 1] - EPS), x[i:i + 1] + EPS).clamp(0, 1)
            with torch.no_grad():
                fooled = model(xi).argmax(1) != y[i]
            if fooled or t == 2:
                break
        assert torch.allclose(x_adv[i:i + 1], xi, atol=1e-6), i


def test_transfer_from_the_run_itself_is_the_white_box_attack(trained):
    from bench.data.loader import DeviceLoader
    from bench.data.store import Split
    from bench.measures import MEASURES

    model, x, y = trained
    loader = DeviceLoader(Split((x[:32] * 255).round().to(torch.uint8), y[:32]), 16, torch.device("cpu"))
    cfg = {"name": "pgd", "eps": 0.031, "step_size": 0.003, "steps": 5, "random_start": "uniform"}
    white = build_attack(cfg, model).evaluate(loader, seed=0)
    res = MEASURES.get("transfer")(model, helpers={"source": model}, attack=cfg).evaluate(loader, seed=0)
    assert res["robust"] == white["robust"] == res["source_robust"] and res["clean"] == white["clean"]


# ---- the Fig. 3 probe ----------------------------------------------------------------------------

def test_layer_grad_ratio_matches_autograd_and_leaves_training_unchanged(tmp_path):
    from bench.fileio import read_json
    from bench.probes import PROBES
    from bench.probes.base import Step
    from bench.train import train

    model = wrn(HE).train()
    probe = PROBES.get("layer_grad_ratio")(model, epoch=1)
    x, y = batch(16)
    p = loss_params(model)
    step = Step(0, 0, 1)
    loss = F.cross_entropy(p.margin_logits(model((x + 0.03).clamp(0, 1)), y), y)
    probe.after_loss(step, x, y, {"loss": loss}, loss)
    model.zero_grad()
    loss.backward()
    probe.after_backward(step, loss)
    rec = {r["param"]: r for r in probe.end_epoch(0)}
    ref = copy.deepcopy(model)
    clean = F.cross_entropy(p.margin_logits(ref(x), y), y)
    g_clean = dict(zip([n for n, _ in ref.named_parameters()], torch.autograd.grad(clean, list(ref.parameters()))))
    for name, param in model.named_parameters():
        assert rec[name]["ratio"] == pytest.approx(param.grad.norm().item() / g_clean[name].norm().item(), rel=1e-4)
    cfg = _cfg({"name": "pgd_at"}, {"name": "wide_resnet", "depth": 10, "widen": 1, "head": HE},
               attack={"eps": "8/255", "step_size": "2/255", "steps": 2})
    train("a", cfg, tmp_path / "a", progress=False)
    train("b", {**cfg, "probes": {"layer_grad_ratio": {"epoch": 2}}}, tmp_path / "b", progress=False)
    wa = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    records = read_json(tmp_path / "b" / "probes.json")["layer_grad_ratio"]
    assert {r["epoch"] for r in records} == {2} and PROBES.get("layer_grad_ratio").summary(records)["ratio_mean"] > 0


# ---- streamed ImageNet-layout data -----------------------------------------------------------------

def _image_tree(root, splits=("train", "val"), classes=("n01", "n02"), per=3, size=40):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per):
                a = (torch.rand(size, size + 8, 3, generator=g) * 255).to(torch.uint8).numpy()
                Image.fromarray(a).save(root / split / c / f"{c}_{i}.JPEG")


def test_imagenet_folder_is_found_fingerprinted_without_decoding_and_streamed(tmp_path, monkeypatch):
    from bench.data import load
    from bench.data.loader import make_loader
    from bench.data.locate import locate
    from bench.data.stream import FileSplit
    from bench.errors import MissingDataError

    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    with pytest.raises(MissingDataError, match="ILSVRC2012_img_train.tar"):
        locate("imagenet")
    _image_tree(tmp_path / "imagenet")
    assert locate("imagenet")[0].format == "imagenet_folder"
    data = load("imagenet", n_test=4)
    assert isinstance(data.train, FileSplit) and len(data.train) == 6 and data.fingerprint["files"] == 12
    assert data.fingerprint["n_test"] == 4 and data.train.y.tolist() == [0, 0, 0, 1, 1, 1]
    loader = make_loader(data, "train", 4, torch.device("cpu"), shuffle=True, augment="resized_crop_flip")
    first = [(x, y) for x, y in loader.batches(0, 0)]
    assert [x.shape for x, _ in first] == [(4, 3, 224, 224), (2, 3, 224, 224)] and first[0][0].max() <= 1
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, loader.batches(0, 0)))   # repeatable per (seed, epoch)
    assert not torch.equal(first[0][0], next(iter(loader.batches(0, 1)))[0])
    test = make_loader(data, "test", 4, torch.device("cpu"))
    assert next(iter(test.batches()))[0].shape == (4, 3, 224, 224)
    before = data.fingerprint["sha256"]
    (tmp_path / "imagenet" / "val" / "n02" / "n02_0.JPEG").write_bytes(b"x" * 10)
    import os
    os.utime(tmp_path / "imagenet" / "val" / "n02", ns=(1, 1))
    assert load("imagenet").fingerprint["sha256"] != before


def test_imagenetc_cells_are_read_from_their_folders(tmp_path, monkeypatch):
    from bench.data.catalog import CIFAR10C_CORRUPTIONS
    from bench.data.loader import DeviceLoader
    from bench.data.store import Split
    from bench.measures import MEASURES

    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    for c in CIFAR10C_CORRUPTIONS:
        for s in range(1, 6):
            _image_tree(tmp_path / "ImageNet-C" / c, splits=(str(s),), per=1, size=24) if c in (
                "fog", "snow") and s in (1, 2) else (tmp_path / "ImageNet-C" / c / str(s)).mkdir(parents=True)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).eval()
    loader = DeviceLoader(Split(torch.zeros(2, 3, 224, 224, dtype=torch.uint8), torch.tensor([0, 1])), 2,
                          torch.device("cpu"))
    m = MEASURES.get("corruptions")(model, source="imagenetc", corruptions=["fog", "snow"], severities=[1, 2])
    res = m.evaluate(loader)
    assert res["n"] == 2 and set(res["per_corruption"]) == {"fog", "snow"}
    with torch.no_grad():
        from bench.data.stream import StreamLoader, scan

        x, yy = next(iter(StreamLoader(scan(tmp_path / "ImageNet-C" / "fog" / "1"), 2, torch.device("cpu")).batches()))
        expect = 100.0 * (model(x).argmax(1) == yy).float().mean().item()
    assert res["per_corruption"]["fog"]["1"] == pytest.approx(expect)
    assert res["per_corruption_mean"]["fog"] == pytest.approx(sum(res["per_corruption"]["fog"].values()) / 2)


# ---- the spec: plan, transcription, targets ----------------------------------------------------------

@pytest.fixture(scope="module")
def plans():
    from bench.plan import Plan

    return {s: Plan(s, papers=["he"]) for s in ("paper", "mini", "smoke")}


def _config(plan, table, row, setting):
    cell = next(c for c in plan.table(f"tables/{'' if plan.scale_name == 'paper' else plan.scale_name + '/'}he_{table}"
                                      ).cells if (c.row, c.setting) == (row, setting))
    return plan.run(cell.runs[0]).config, cell


def test_paper_scale_runs_have_the_papers_settings(plans):
    p = plans["paper"]
    cfg, _ = _config(p, "table2", "pgd_at_he", "c")
    assert cfg["epochs"] == 100 and cfg["schedule"]["milestones"] == [74, 89] and cfg["batch_size"] == 128
    assert cfg["model"] == {"name": "wide_resnet", "depth": 34, "widen": 10, "head": HE}
    assert cfg["attack"]["eps"] == "8/255" and cfg["attack"]["steps"] == 10 and cfg["probes"] == {
        "layer_grad_ratio": {"epoch": 70}}
    cfg, _ = _config(p, "table4", "freeat_he", "wrn101_2")
    assert cfg["method"] == {"name": "free_at", "replays": 4, "eps": "4/255", "step": "4/255"}
    assert cfg["epochs"] == 23 and cfg["model"]["layers"] == [3, 4, 23, 3] and cfg["model"]["head"]["s"] == 10
    cfg, _ = _config(p, "table3", "fastat_mhe", "c")
    assert cfg["model"]["head"]["mhe"] and cfg["model"]["name"] == "preact_resnet" and cfg["epochs"] == 30
    cfg, _ = _config(p, "table9", "s_1", "c")
    assert cfg["model"]["head"] == {**HE, "s": 1}
    assert _config(p, "table9", "s_15", "c")[0] == _config(p, "table2", "trades_he", "c")[0]   # shared run
    proto = p.evals[_config(p, "table2", "pgd_at", "c")[1].evals[0]].protocol
    assert proto["attack"]["eps"] == 0.031 and proto["attack"]["step_size"] == 0.003
    cfg, _ = _config(p, "table6", "pgd_at_he", "wrn34_20")
    assert cfg["model"]["widen"] == 20 and cfg["attack"]["logit_scale"] == 1 and cfg["selection"]["metric"] == "robust"
    runs = {p.evals[k].run_id for t in p.tables.values() for k in t.eval_keys()}
    assert len(runs) == 53                     # 52 training runs (inventory §5) and torchvision's ResNet-50


def test_reduced_scales_rescale_the_probe_and_skip_costly_attacks(plans):
    cfg, _ = _config(plans["mini"], "table2", "pgd_at", "c")
    assert cfg["probes"]["layer_grad_ratio"]["epoch"] == 3 and cfg["model"]["depth"] == 10
    cells = {c.column: c for c in plans["mini"].table("tables/mini/he_table2").cells if c.row == "pgd_at"}
    assert cells["pgd20"].evals and not cells["pgd500"].evals and not cells["feaatt"].evals
    assert "not run at the mini scale" in cells["fab"].note
    cfg, _ = _config(plans["smoke"], "table4", "freeat", "r152")
    assert cfg["model"]["layers"] == [1, 1, 1, 1] and cfg["model"]["width"] == 8


def test_every_published_number_of_the_paper_is_transcribed():
    from bench.specs import load
    from bench.plan_model import published_cells

    counts: dict[str, int] = {}
    for t, *_ in published_cells(load("he")):
        counts[t] = counts.get(t, 0) + 1
    assert counts == {"table2": 54, "table3": 24, "table4": 24, "table5": 103, "table6": 6, "table7": 4,
                      "table8": 42, "table9": 22, "table10": 63, "table11": 449, "table12": 150, "ablation": 14,
                      "adaptive": 6, "fig2": 2}


def test_the_transcription_is_consistent_across_tables():
    from bench.plan_model import published_cells
    from bench.specs import load

    pub = {(t, s, r, c): v for t, s, r, c, v, _ in published_cells(load("he"))}
    for (t, s, r, c), v in pub.items():
        if t == "table10" and ("table2", s, r, c) in pub:
            assert pub[("table2", s, r, c)] == v                      # Table 10 repeats Table 2's 42 cells
    assert (pub[("table9", "c", "m_0p2", "pgd20")], pub[("table9", "c", "s_15", "clean")]) == (
        pub[("table2", "c", "trades_he", "pgd20")], pub[("table2", "c", "trades_he", "clean")])
    names = {"defocus": "defocus", "glass": "glass", "motion": "motion", "zoom": "zoom", "snow": "snow",
             "frost": "frost", "fog": "fog", "bright": "bright", "contra": "contra", "elastic": "elastic",
             "pixel": "pixel", "jpeg": "jpeg"}
    known = {("alp_he", "defocus"), ("alp_he", "glass"), ("trades", "pixel"), ("trades", "mca")}   # A-32
    for table, setting, rows in (("table11", "c10c", ["pgd_at", "pgd_at_he", "alp", "alp_he", "trades", "trades_he"]),
                                 ("table12", "inc", ["freeat", "freeat_he"])):
        for r in rows:
            for col in names:
                vals = [pub.get((table, f"s{k}", r, col)) for k in range(1, 6)]
                shown = pub.get(("table5", setting, r, col))
                if None in vals or shown is None or (r, col) in known:
                    continue
                assert abs(sum(vals) / 5 - shown) <= 0.05, (table, r, col)
    assert abs(pub[("table5", "c10c", "alp_he", "defocus")] - sum(pub[("table11", f"s{k}", "alp_he", "glass")]
                                                                   for k in range(1, 6)) / 5) < 0.01   # the swap


def test_bench_published_lists_he_and_missing_imagenet_stops_before_any_job(tmp_path):
    from test_workflow import sh, snakemake

    rows = list(csv.DictReader(io.StringIO(sh("bench", "published", "--csv").stdout)))
    assert sum(r["paper"] == "he" for r in rows) == 963
    out = snakemake(tmp_path, "--cores", "1", "tables/mini/he_table4.md", env={"BENCH_DATA": str(tmp_path / "no")},
                    check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "ILSVRC2012_img_val.tar" in text and "partial=1" in text
    assert not (tmp_path / "tables").exists()


def test_smoke_tables_1_and_7_build_through_snakemake(tmp_path):
    from test_workflow import snakemake

    env = {"BENCH_RESULTS": str(tmp_path / "results"), "BENCH_CACHE": str(tmp_path / "cache")}
    snakemake(tmp_path, "--cores", "1", "tables/smoke/he_table1.md", "tables/smoke/he_table7.md", env=env)
    t1 = (tmp_path / "tables/smoke/he_table1.md").read_text()
    assert "CE(15·(cos θ* − 0.2·1_y), y)" in t1 and "CEᵐ(f̃(x*), y)" in t1 and "declared by the method" in t1
    t7 = (tmp_path / "tables/smoke/he_table7.md").read_text()
    for needle in ("| 67.09 |", "| 33.75 |", "bench.attacks.pgd_fn", "Hardware:", "more efficient with FN"):
        assert needle in t7, needle
    assert "not run" not in t7.split("## Claims")[0]
    # snakemake --report: the tables, with their captions, in one self-contained HTML file
    snakemake(tmp_path, "--report", str(tmp_path / "report.html"), "tables/smoke/he_table7.md", env=env)
    html = (tmp_path / "report.html").read_text()
    assert "he_table7.md" in html and "Tables" in html
