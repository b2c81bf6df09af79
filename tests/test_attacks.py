"""Attacks: constraints, effect, and agreement with independent implementations."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.attacks import ATTACKS, build
from bench.numbers import parse_number


EPS = 8 / 255
UNBOUNDED = {"dra"}   # no ℓ∞ ball: an ℓ1-scaled budget (tests/test_dra.py checks it)


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("cfg", [
    dict(name="pgd"),
    dict(name="pgd", loss="kl", random_start="normal", clamp_start=False),
    dict(name="pgd", loss="cw", kappa=50),
    dict(name="pgd", restarts=3),
    dict(name="fgsm"),
])
def test_linf_attacks_stay_in_ball_and_box_and_lower_accuracy(trained, cfg):
    model, x, y = trained
    x_adv = build(cfg, model)(x, y, torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    clean, robust = accuracy(model, x, y), accuracy(model, x_adv, y)
    assert clean > 0.6, "the fixture model should have learned the synthetic task"
    assert robust < clean - 0.2, f"{cfg}: accuracy {clean:.2f} → {robust:.2f}"


def test_l2_pgd_stays_in_ball_and_lowers_accuracy(trained):
    model, x, y = trained
    x_adv = build(dict(name="pgd", norm="l2", eps=1.0, step_size=0.25, steps=10), model)(x, y)
    assert (x_adv - x).flatten(1).norm(dim=1).max() <= 1.0 + 1e-5
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.2


def test_attack_restores_model_mode_and_uses_requested_bn_mode(trained):
    model, x, y = trained
    seen = []
    hook = model.bn1.register_forward_hook(lambda m, i, o: seen.append(m.training))
    model.train()
    build(dict(name="pgd", steps=2), model)(x[:4], y[:4])
    assert model.training and seen and not any(seen)
    seen.clear()
    model.eval()
    build(dict(name="pgd", steps=2, bn_mode="train"), model)(x[:4], y[:4])
    assert not model.training and all(seen)
    hook.remove()


def test_an_attack_takes_input_gradients_only_and_the_same_examples(trained, monkeypatch):
    import contextlib

    import bench.attacks.base as base

    model, x, y = trained
    for p in model.parameters():
        p.grad = None
    frozen_before = next(model.parameters())
    frozen_before.requires_grad_(False)   # a parameter frozen before the attack stays frozen
    seen = []
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]   # not the frozen one
    hook = last.register_forward_hook(lambda m, i, o: seen.append(m.weight.requires_grad))
    g = torch.Generator().manual_seed(0)
    attack = build(dict(name="pgd", steps=3), model)
    x_adv = attack(x[:16], y[:16], g)
    hook.remove()
    assert seen and not any(seen) and all(p.grad is None for p in model.parameters())
    assert not frozen_before.requires_grad and all(p.requires_grad for p in list(model.parameters())[1:])
    frozen_before.requires_grad_(True)
    monkeypatch.setattr(base, "frozen", lambda m: contextlib.nullcontext())   # weights requiring gradients
    assert torch.equal(attack(x[:16], y[:16], torch.Generator().manual_seed(0)), x_adv)


def reference_pgd(model, x, y, eps, alpha, steps, loss, start, g=None, kappa=0.0):
    """A plain, independent PGD (ℓ∞): written from the papers' descriptions."""
    model.eval()
    with torch.no_grad():
        p_clean = F.softmax(model(x), dim=1)
    if start == "uniform":
        x_adv = (x + (torch.rand(x.shape, generator=g) * 2 - 1) * eps).clamp(0, 1)
    elif start == "normal":
        x_adv = x + 0.001 * torch.randn(x.shape, generator=g)
    else:
        x_adv = x.clone()
    for _ in range(steps):
        x_adv = x_adv.clone().requires_grad_(True)
        logits = model(x_adv)
        if loss == "ce":
            obj = F.cross_entropy(logits, y, reduction="sum")
        elif loss == "kl":
            obj = F.kl_div(F.log_softmax(logits, 1), p_clean, reduction="sum")
        else:
            onehot = F.one_hot(y, logits.shape[1]).bool()
            true = logits[onehot]
            other = logits.masked_fill(onehot, -1e9).max(1).values
            obj = (-torch.clamp(true - other, min=-kappa)).sum()
        g_x, = torch.autograd.grad(obj, x_adv)
        x_adv = x_adv.detach() + alpha * g_x.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv


@pytest.mark.parametrize("loss,start", [("ce", "none"), ("kl", "normal"), ("cw", "uniform"), ("ce", "uniform")])
def test_pgd_agrees_with_independent_implementation(trained, loss, start):
    model, x, y = trained
    x, y = x[:32], y[:32]
    cfg = dict(name="pgd", eps="8/255", step_size="2/255", steps=7, loss=loss, random_start=start,
               clamp_start=start != "normal")
    ours = build(cfg, model)(x, y, torch.Generator().manual_seed(3))
    ref = reference_pgd(model, x, y, EPS, 2 / 255, 7, loss, start, torch.Generator().manual_seed(3))
    assert torch.allclose(ours, ref, atol=1e-6), (ours - ref).abs().max()


def test_pgd_agrees_with_torchattacks(trained):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = trained
    x, y = x[:32], y[:32]
    ref = torchattacks.PGD(model, eps=EPS, alpha=2 / 255, steps=10, random_start=False)(x, y)
    ours = build(dict(name="pgd", steps=10, random_start="none"), model)(x, y)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_every_registered_attack_runs(trained):
    model, x, y = trained
    fast = {"autoattack": dict(n_iter=2, n_queries=5, attacks=["apgd-ce"]), "cw": dict(steps=20),
            "zoo": dict(queries=60), "spsa": dict(iterations=3, checkpoints=[3], samples=4),
            "nes": dict(iterations=3, checkpoints=[3], samples=4), "rays": dict(queries=100),
            "feature_attack": dict(steps=5, n_targets=2)}   # the papers' budgets take minutes
    for name in ATTACKS.names():
        cfg = {"name": name, **fast.get(name, {})}
        x_adv = build(cfg, model)(x[:8], y[:8])
        assert x_adv.shape == x[:8].shape and x_adv.min() >= 0 and x_adv.max() <= 1
        if name not in UNBOUNDED:
            assert (x_adv - x[:8]).abs().max() <= EPS + 1e-6


def test_autoattack_is_the_official_package(trained):
    model, x, y = trained
    from bench.data.loader import DeviceLoader
    from bench.data.store import Split

    loader = DeviceLoader(Split((x[:16] * 255).round().to(torch.uint8), y[:16]), 16, torch.device("cpu"))
    res = build(dict(name="autoattack", n_iter=5, n_queries=20), model).evaluate(loader)
    assert res["implementation"].startswith("pyautoattack ")
    assert set(res["robust_after_each_attack"]) == {"apgd-ce", "apgd-t", "fab-t", "square"}
    assert 0 <= res["robust"] <= res["clean"] <= 100


def test_epsilon_is_read_as_a_fraction():
    assert parse_number("8/255") == 8 / 255
    with pytest.raises(Exception, match="fraction"):
        parse_number("eight")


def test_restarts_attack_only_the_examples_still_robust_with_the_same_answer(trained):
    """The full-batch restarts (every example attacked by every restart, the first fooling one
    kept, else the largest loss) and the suite's (later restarts only on the still-robust
    examples): the same adversarial examples, so the same robust accuracy."""
    model, x, y = trained
    attack = build({"name": "pgd", "steps": 3, "restarts": 4, "eps": "8/255", "step_size": "2/255"}, model)
    model.eval()
    g = torch.Generator().manual_seed(5)
    best = attack.iterate(x, y, None, attack.start(x, g))
    with torch.no_grad():
        out = model(best)
        fooled, loss = out.argmax(1) != y, attack.objective(out, y, None)
    for _ in range(3):
        cand = attack.iterate(x, y, None, attack.start(x, g))
        with torch.no_grad():
            out = model(cand)
            f, l = out.argmax(1) != y, attack.objective(out, y, None)
        take = ~fooled & (f | (l > loss))
        best = torch.where(take[:, None, None, None], cand, best)
        loss, fooled = torch.where(take, l, loss), fooled | f
    ours = attack(x, y, torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(model(ours).argmax(1) == y, model(best).argmax(1) == y)
    assert torch.allclose(ours, best, atol=1e-6)
