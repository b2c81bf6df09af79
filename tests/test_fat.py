"""FAT (Zhang et al., ICML 2020): PGD-K-τ, the three FAT objectives, the Small CNN, the
class subset, the layer embeddings, the spec and its plan. Fast tier, CPU, seconds."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from bench.attacks import build as build_attack
from bench.methods import METHODS

from conftest import tiny_model

EPS, STEP = 8 / 255, 2 / 255


def batch(n=16, seed=0, classes=10):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, classes, (n,), generator=g)


def mlp(seed=0, classes=10):
    """A float64 model without BatchNorm, so batch and per-example runs agree to rounding."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, classes)).double().eval()


# ---- PGD-K-τ ------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [
    {"loss": "ce", "random_start": "uniform"},
    {"loss": "kl", "random_start": "normal", "clamp_start": True},
    {"loss": "cw", "kappa": 50.0, "random_start": "none"},
])
def test_tau_at_least_k_is_pgd_k_exactly(cfg):
    """τ ≥ K: every example takes K steps, with PGD-K's start, iterates and generator stream."""
    torch.manual_seed(0)
    model = tiny_model().eval()
    x, y = batch()
    base = {"eps": EPS, "step_size": STEP, "steps": 4, **cfg}
    ref = build_attack({"name": "pgd", **base}, model)(x, y, torch.Generator().manual_seed(3))
    for tau in (4, 9):
        attack = build_attack({"name": "pgd_es", "tau": tau, **base}, model)
        g = torch.Generator().manual_seed(3)
        x_adv, steps = attack.search(x, y, g)
        assert torch.equal(x_adv, ref) and torch.equal(steps, torch.full((16,), 4))
        assert torch.equal(torch.rand(3, generator=g),
                           (lambda g2: (build_attack({"name": "pgd", **base}, model)(x, y, g2), torch.rand(3, generator=g2))[1])(
                               torch.Generator().manual_seed(3)))    # the same draws were consumed
    assert model.training is False


def reference_earlystop(model, x0, data, target, step_size, eps, K, tau, loss_fn="cent"):
    """FAT's earlystop.py written out as its authors did (a Python loop over the examples,
    the batch compacted after every check, stopped examples emitted first), from a given
    start x0 and without ω; returns (adv, target, natural, count). Losses on float32 logits,
    as the suite's attacks compute them."""
    control = torch.ones(len(target), dtype=torch.long) * tau
    iter_adv, iter_clean, iter_target = x0.clone(), data.clone(), target.clone()
    p_clean = F.softmax(model(data).float(), 1)
    out_adv, out_target, out_nat, count = [], [], [], 0
    while K > 0:
        iter_adv.requires_grad_()
        output = model(iter_adv).float()
        pred = output.max(1)[1]
        output_index, iter_index = [], []
        for idx in range(len(pred)):
            if pred[idx] != iter_target[idx]:
                if control[idx] == 0:
                    output_index.append(idx)
                else:
                    control[idx] -= 1
                    iter_index.append(idx)
            else:
                iter_index.append(idx)
        if output_index:
            out_adv.append(iter_adv[output_index].detach())
            out_nat.append(iter_clean[output_index])
            out_target.append(iter_target[output_index])
        if loss_fn == "cent":
            loss = F.cross_entropy(output, iter_target)
        else:
            loss = F.kl_div(F.log_softmax(output, 1), p_clean, reduction="sum")
        grad, = torch.autograd.grad(loss, iter_adv)
        if not iter_index:
            return torch.cat(out_adv), torch.cat(out_target), torch.cat(out_nat), count
        control, iter_adv, iter_clean, iter_target = (control[iter_index], iter_adv[iter_index],
                                                      iter_clean[iter_index], iter_target[iter_index])
        if loss_fn == "kl":
            p_clean = p_clean[iter_index]
        grad = grad[iter_index]
        iter_adv = iter_adv.detach() + step_size * grad.sign()
        iter_adv = torch.min(torch.max(iter_adv, iter_clean - eps), iter_clean + eps).clamp(0, 1)
        count += len(iter_target)
        K -= 1
    out_adv.append(iter_adv.detach()), out_target.append(iter_target), out_nat.append(iter_clean)
    return torch.cat(out_adv), torch.cat(out_target), torch.cat(out_nat), count


@pytest.mark.parametrize("tau,loss", [(0, "ce"), (1, "ce"), (2, "ce"), (3, "kl"), (0, "kl")])
def test_pgd_es_equals_the_authors_algorithm(tau, loss):
    """Same friendly examples as earlystop.py (matched by their natural image; the code
    reorders), and Σ steps = the code's BP count (examples stepping, summed over steps)."""
    model = mlp()
    x, _ = batch(24, seed=1)
    x = x.double()
    y = model(x).argmax(1)             # correctly classified at x, so the search matters
    y[:4] = (y[:4] + 1) % 10           # … except four misclassified from the start
    attack = build_attack({"name": "pgd_es", "eps": 0.03, "step_size": 0.007, "steps": 10, "tau": tau,
                           "loss": loss, "random_start": "uniform"}, model)
    g = torch.Generator().manual_seed(5)
    x_adv, steps = attack.search(x, y, g)
    x0 = attack.start(x, torch.Generator().manual_seed(5))
    adv, target, nat, count = reference_earlystop(model, x0, x, y, 0.007, 0.03, 10, tau,
                                                  "cent" if loss == "ce" else "kl")
    assert int(steps.sum()) == count and 0 < count < 10 * 24
    order = [int((nat - x[i]).abs().flatten(1).sum(1).argmin()) for i in range(24)]
    assert sorted(order) == list(range(24))
    assert torch.allclose(adv[order], x_adv, atol=1e-12) and torch.equal(target[order], y)
    # every example returned early is misclassified where it stopped; the others took K steps
    early = steps < 10
    assert (model(x_adv[early]).argmax(1) != y[early]).all()


class Scripted(torch.nn.Module):
    """Predictions by script: example i (its id in pixel 0) is misclassified at its k-th
    check iff script[i][k] is 1; the gradient is zero, so iterates never move."""

    def __init__(self, script):
        super().__init__()
        self.script, self.calls = script, {}

    def forward(self, x):
        ids = x[:, 0, 0, 0].round().long().tolist()
        rows = []
        for i in ids:
            k = self.calls.get(i, 0)
            self.calls[i] = k + 1
            wrong = self.script[i][min(k, len(self.script[i]) - 1)]
            rows.append(torch.tensor([0.0, 1.0]) if wrong else torch.tensor([1.0, 0.0]))
        return torch.stack(rows) + 0 * x.sum((1, 2, 3))[:, None]


def test_counters_are_never_reset_and_tau0_returns_the_start():
    script = {0: [1, 0, 1, 0, 1, 0, 1, 0],      # τ=1: wrong, right, wrong → stops at its 3rd check (2 steps)
              1: [1, 1, 1, 1, 1, 1, 1, 1],      # τ=1: stops at its 2nd check (1 step)
              2: [0, 0, 0, 0, 0, 0, 0, 0],      # never wrong: K steps
              3: [0, 1, 0, 0, 0, 0, 0, 1]}      # wrong once: K steps (τ+1 = 2 wrong checks would stop it)
    x = torch.zeros(4, 3, 4, 4)
    x[:, 0, 0, 0] = torch.arange(4.0)
    y = torch.zeros(4, dtype=torch.long)
    attack = build_attack({"name": "pgd_es", "eps": 0.5, "step_size": 0.1, "steps": 6, "tau": 1,
                           "random_start": "none", "bounds": None}, Scripted(script))
    _, steps = attack.search(x, y)
    assert steps.tolist() == [2, 1, 6, 6]        # a counter reset at a correct check would give 4 for example 0
    # τ = 0: an example misclassified at its start is returned unchanged, after 0 steps
    model = mlp()
    xs, _ = batch(8, seed=2)
    xs = xs.double()
    y = model(xs).argmax(1)
    y[:3] = (y[:3] + 1) % 10
    attack = build_attack({"name": "pgd_es", "eps": EPS, "step_size": STEP, "steps": 10, "tau": 0,
                           "random_start": "none"}, model)
    x_adv, steps = attack.search(xs, y)
    assert steps[:3].tolist() == [0, 0, 0] and torch.equal(x_adv[:3], xs[:3])
    assert (steps[3:] > 0).all() and (x_adv[3:] != xs[3:]).any()


def test_search_without_projection_exceeds_eps_but_never_k_alpha():
    model = tiny_model().eval()
    x, y = batch()
    attack = build_attack({"name": "pgd_es", "eps": 1 / 255, "step_size": 0.01, "steps": 10, "tau": 10,
                           "random_start": "none", "project": False}, model)
    x_adv, steps = attack.search(x, y)
    delta = (x_adv - x).abs().amax()
    assert delta > 1 / 255 + 1e-6 and delta <= 10 * 0.01 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    projected = build_attack({"name": "pgd_es", "eps": 1 / 255, "step_size": 0.01, "steps": 10, "tau": 10,
                              "random_start": "none"}, model)(x, y)
    assert (projected - x).abs().amax() <= 1 / 255 + 1e-6


def test_pgd_es_parameters_are_checked():
    from bench.attacks import ATTACKS
    from bench.errors import SpecError

    cls = ATTACKS.get("pgd_es")
    for bad in ({"tau": -1}, {"tau": 1.5}, {"restarts": 2}, {"project": "no"}, {"omega": -0.1}):
        with pytest.raises(SpecError):
            cls.check_params(bad)
    cls.check_params({"tau": 3, "omega": 0.001, "project": False, "loss": "kl"})


# ---- the three objectives ------------------------------------------------------------------

ATTACK = {"eps": EPS, "step_size": STEP, "steps": 3}


@pytest.mark.parametrize("fat,ref,ref_params,attack", [
    ("fat", "pgd_at", {}, {}),
    ("fat_trades", "trades", {"beta": 6.0, "repeat_clean_forward": False}, {"clamp_start": True}),
    ("fat_mart", "mart", {"beta": 6.0}, {"clamp_start": True}),
])
def test_tau_k_fat_objectives_equal_at_trades_mart(fat, ref, ref_params, attack):
    """With τ = K each FAT objective is its base method (matching start and clamp): the same
    loss and the same parameter gradients; and it reports K BPs per example."""
    torch.manual_seed(0)
    model = tiny_model()
    x, y = batch()
    out = []
    for name, params, att in ((fat, {}, {"tau": 3}), (ref, ref_params, attack)):
        m = copy.deepcopy(model).train()
        method = METHODS.get(name)(m, {**ATTACK, **att}, **params)
        loss, stats = method.loss(x, y, torch.Generator().manual_seed(7))
        out.append((loss, torch.autograd.grad(loss, list(m.parameters())), stats))
    (l1, g1, s1), (l2, g2, _) = out
    assert l1.item() == pytest.approx(l2.item(), rel=1e-6)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-6)
    assert s1["bp"].item() == 3.0


def test_fat_defaults_follow_the_code_and_bp_falls_with_tau():
    model = tiny_model()
    p = METHODS.get("fat")(model, ATTACK).attack.params()
    assert (p["loss"], p["random_start"], p["clamp_start"], p["bn_mode"], p["tau"], p["omega"], p["project"]) == \
        ("ce", "uniform", True, "eval", 0, 0.0, True)
    for name, loss in (("fat_trades", "kl"), ("fat_mart", "ce")):
        p = METHODS.get(name)(model, ATTACK).attack.params()
        assert (p["loss"], p["random_start"], p["normal_std"], p["clamp_start"]) == (loss, "normal", 0.001, True)
    torch.manual_seed(0)
    x, y = batch(32)
    bps = [METHODS.get("fat")(model, {**ATTACK, "steps": 10, "tau": tau}).loss(
        x, y, torch.Generator().manual_seed(1))[1]["bp"].item() for tau in (0, 1, 3, 10)]
    assert bps == sorted(bps) and bps[-1] == 10.0 and bps[0] < 10
