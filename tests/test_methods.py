"""Training objectives: identities between methods and formulas on fixed tensors."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from bench.methods import METHODS
from bench.methods.mart import mart_loss

from conftest import tiny_model

ATTACK = {"eps": "8/255", "step_size": "2/255", "steps": 3}


def batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def make(name, model, **params):
    cls = METHODS.get(name)
    helpers = {"helper": tiny_model()} if cls.helpers_required else None
    attack = dict(ATTACK) if cls.attack_name == "pgd" else {"eps": ATTACK["eps"], "steps": ATTACK["steps"]}
    return cls(model, attack, helpers=helpers, **params)


def params_after_steps(name, steps=4, **params):
    torch.manual_seed(0)
    model = tiny_model()
    method = make(name, model, **params)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for i in range(steps):
        x, y = batch(seed=i)
        loss, _ = method.loss(x, y, torch.Generator().manual_seed(i))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_trades_with_beta_zero_trains_like_cross_entropy():
    trades = params_after_steps("trades", beta=0.0)
    standard = params_after_steps("standard")
    for a, b in zip(trades, standard):
        assert torch.allclose(a, b, atol=1e-6)


def test_trades_with_beta_changes_training():
    trades = params_after_steps("trades", beta=6.0)
    standard = params_after_steps("standard")
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(trades, standard))


def test_hat_with_gamma_zero_equals_trades():
    torch.manual_seed(0)
    model = tiny_model()
    x, y = batch()
    losses, grads = [], []
    for name, params in (("hat", dict(beta=2.5, gamma=0.0)), ("trades", dict(beta=2.5))):
        m = copy.deepcopy(model)
        loss, _ = make(name, m, **params).loss(x, y, torch.Generator().manual_seed(7))
        losses.append(loss.item())
        grads.append(torch.autograd.grad(loss, list(m.parameters())))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_hat_helper_example_and_label_follow_the_official_code():
    torch.manual_seed(0)
    model, helper = tiny_model(), tiny_model()
    method = METHODS.get("hat")(model, dict(ATTACK), helpers={"helper": helper}, beta=1.0, gamma=1.0)
    seen = {}
    model.register_forward_pre_hook(lambda m, inp: seen.setdefault("inputs", []).append(inp[0]))
    helper.register_forward_pre_hook(lambda m, inp: seen.setdefault("helper_in", inp[0]))
    x, y = batch(8)
    method.loss(x, y, torch.Generator().manual_seed(1))
    x_clean, x_adv, x_help = seen["inputs"][-3:]
    assert torch.equal(x_clean, x)
    assert torch.allclose(x_help, x + 2.0 * (x_adv - x))          # h = 2, not clamped
    assert torch.equal(seen["helper_in"], x_adv)                   # label from x', not x̃
    assert not helper.training


def test_hat_ce_variant_uses_cross_entropy_attack_and_robust_term():
    method = make("hat", tiny_model(), robust_loss="ce")
    assert method.attack.loss.value == "ce" and method.attack.random_start.value == "uniform"
    with pytest.raises(Exception, match="robust_loss"):
        make("hat", tiny_model(), robust_loss="mse")


def test_mart_loss_matches_its_formula_on_fixed_tensors():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    logits_adv = torch.tensor([[0.5, 1.5, -0.5], [0.0, 1.0, -1.0]])
    y = torch.tensor([0, 2])
    beta = 6.0
    expected = 0.0
    for i in range(2):
        p = torch.softmax(logits[i], 0)
        q = torch.softmax(logits_adv[i], 0)
        wrong = max((k for k in range(3) if k != y[i]), key=lambda k: q[k])
        bce = -torch.log(q[y[i]]) - torch.log(1.0001 - q[wrong] + 1e-12)
        kl = sum(p[k] * (torch.log(p[k]) - torch.log(q[k] + 1e-12)) for k in range(3))
        expected = expected + (bce + beta * kl * (1.0000001 - p[y[i]])) / 2
    assert mart_loss(logits, logits_adv, y, beta).item() == pytest.approx(expected.item(), rel=1e-6)


def test_trades_objective_value_is_ce_plus_beta_kl():
    torch.manual_seed(0)
    model = tiny_model()
    x, y = batch()
    fresh = copy.deepcopy(model)   # the loss call moves BN running statistics
    loss, _ = make("trades", model, beta=3.0).loss(x, y, torch.Generator().manual_seed(2))
    model = fresh
    x_adv = make("trades", model, beta=3.0).attack(x, y, torch.Generator().manual_seed(2))
    model.train()
    logits, logits_adv = model(x), model(x_adv)
    kl = (F.softmax(logits, 1) * (F.log_softmax(logits, 1) - F.log_softmax(logits_adv, 1))).sum(1).mean()
    assert loss.item() == pytest.approx((F.cross_entropy(logits, y) + 3.0 * kl).item(), rel=1e-5)


def test_every_registered_method_trains_a_step():
    """Walk the registry: every method takes its optimiser steps through the loop's updater."""
    import contextlib

    from bench.train import Updater

    for name in METHODS.names():
        torch.manual_seed(0)
        model = tiny_model()
        before = [p.detach().clone() for p in model.parameters()]
        method = make(name, model)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        update = Updater(opt, sched, {}, contextlib.nullcontext, method.updates_per_batch)
        stats = method.train_step(*batch(8), torch.Generator().manual_seed(0), update)
        assert all(torch.isfinite(v) for v in stats.values()), name
        assert update.index == method.updates_per_batch, name
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), name


def test_unknown_method_parameter_is_a_clear_error():
    with pytest.raises(Exception, match="no parameter"):
        make("trades", tiny_model(), betta=1.0)
