"""BAT (Kim et al., 2021): the bridged objective, LeNet, the cyclic schedule and the
transcribed tables. Fast tier, CPU, seconds."""
from __future__ import annotations

import copy
import csv
import io
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from bench.methods import METHODS
from bench.methods.bat import bridge_points, bridged_kl
from bench.models import build
from bench.optim import build_optimizer, build_schedule

from conftest import REPO, tiny_model

PAPER = REPO.parent / "shared" / "papers" / "bat.md"
CE_ATTACK = {"eps": "8/255", "step_size": "2/255", "steps": 3, "loss": "ce", "random_start": "uniform",
             "clamp_start": True}


def batch(n=16, shape=(3, 32, 32), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)


def lenet():
    return build("lenet", 10, 1)


# ---- the objective ----------------------------------------------------------------------

@pytest.mark.parametrize("model_fn,shape,clean_first", [
    (tiny_model, (3, 32, 32), False),   # BatchNorm: x* built before the clean forward, as TRADES does
    (lenet, (1, 28, 28), True),         # no BatchNorm: the author's order gives the same x*
])
def test_m1_equals_trades_with_the_same_ce_attack(model_fn, shape, clean_first):
    """m = 1 is TRADES' objective on the same x* (TRADES with a CE inner maximisation):
    equal loss and equal parameter gradients."""
    torch.manual_seed(0)
    model = model_fn()
    x, y = batch(shape=shape)
    losses, grads = [], []
    for name, params in (("bat", dict(beta=5.0, m=1, clean_first=clean_first)), ("trades", dict(beta=5.0))):
        m = copy.deepcopy(model)
        method = METHODS.get(name)(m, dict(CE_ATTACK), **params)
        assert method.attack_config["loss"] == "ce" and method.attack_config["random_start"] == "uniform"
        loss, _ = method.loss(x, y, torch.Generator().manual_seed(7))
        losses.append(loss.item())
        grads.append(torch.autograd.grad(loss, list(m.parameters())))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_default_attack_is_torchattacks_pgd():
    method = METHODS.get("bat")(lenet(), {"eps": 0.3, "step_size": 0.02, "steps": 40})
    assert method.m == 2 and method.beta == 5.0
    p = method.attack.params()
    assert (p["loss"], p["random_start"], p["clamp_start"], p["bn_mode"]) == ("ce", "uniform", True, "eval")
    with pytest.raises(Exception, match="positive integer"):
        METHODS.get("bat")(lenet(), {}, m=0)


def test_bridges_lie_on_the_segment_and_are_what_the_model_sees():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 1, 28, 28, generator=g)
    x_adv = (x + 0.3 * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1)
    for m in (1, 2, 3, 5):
        points = bridge_points(x, x_adv, m)
        assert len(points) == m and torch.equal(points[-1], x_adv)
        for k, p in enumerate(points, start=1):
            assert torch.allclose(p, x + (k / m) * (x_adv - x), atol=1e-7)     # x_k = x + (k/m)·δ
            assert p.min() >= 0 and p.max() <= 1
    # the training forwards (train mode) are x, x_1, …, x_m with x_m = x*
    torch.manual_seed(0)
    model = lenet()
    seen = []
    model.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach()) if mod.training else None)
    xb, yb = batch(8, (1, 28, 28))
    method = METHODS.get("bat")(model, {"eps": 0.3, "step_size": 0.05, "steps": 3}, m=3)
    model.train()
    method.loss(xb, yb, torch.Generator().manual_seed(1))
    assert len(seen) == 4 and torch.equal(seen[0], xb)
    delta = seen[3] - xb
    assert delta.abs().max() <= 0.3 + 1e-6 and delta.abs().max() > 0
    for k in (1, 2):
        assert torch.allclose(seen[k], xb + k / 3 * delta, atol=1e-6)
    assert model.training


def _kl(p, q):
    return sum(p[j] * (torch.log(p[j]) - torch.log(q[j])) for j in range(len(p)))


def test_m2_loss_matches_a_hand_computation():
    """CE(f(x), y) + β·[KL(p(x) ‖ p(x + δ/2)) + KL(p(x + δ/2) ‖ p(x*))], batch mean, on a fixed
    linear model and a fixed x*; gradients flow through both sides of every KL."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.3, 0.1, -1.0, 2.0], [-0.5, 1.5, 0.2, -0.7]]))
        model[1].bias.copy_(torch.tensor([0.1, -0.2, 0.05]))
    x = torch.tensor([[0.2, 0.4, 0.6, 0.8], [0.9, 0.1, 0.5, 0.3]]).view(2, 1, 2, 2)
    x_adv = torch.tensor([[0.5, 0.1, 0.9, 0.5], [0.6, 0.4, 0.2, 0.6]]).view(2, 1, 2, 2)
    y = torch.tensor([0, 2])
    beta = 5.0
    method = METHODS.get("bat")(model, {"eps": 0.3}, beta=beta, m=2)
    method.attack = lambda xx, yy, g=None: x_adv           # a fixed x*
    loss, stats = method.loss(x, y)

    W, b = model[1].weight, model[1].bias
    ce, kl = 0.0, 0.0
    for i in range(2):
        xs = [x[i].flatten(), (x[i] + 0.5 * (x_adv[i] - x[i])).flatten(), x_adv[i].flatten()]
        ps = [torch.softmax(W @ v + b, 0) for v in xs]
        ce = ce - torch.log(ps[0][y[i]]) / 2
        kl = kl + (_kl(ps[0], ps[1]) + _kl(ps[1], ps[2])) / 2
    expected = ce + beta * kl
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    g_loss = torch.autograd.grad(loss, [W, b])
    g_hand = torch.autograd.grad(expected, [W, b])
    for a, c in zip(g_loss, g_hand):
        assert torch.allclose(a, c, atol=1e-6)
    # detaching the KL targets would change the gradient: both sides carry gradients here
    logits = [model(v) for v in (x, x + 0.5 * (x_adv - x), x_adv)]
    detached = F.cross_entropy(logits[0], y) + beta * bridged_kl([logits[0].detach(), logits[1]]) \
        + beta * F.kl_div(F.log_softmax(logits[2], 1), F.softmax(logits[1], 1).detach(), reduction="batchmean")
    assert not torch.allclose(torch.autograd.grad(detached, [W])[0], g_loss[0], atol=1e-4)
    assert stats["kl"].item() == pytest.approx(kl.item(), rel=1e-6)


def test_bat_trains_a_step_and_uses_every_bridge():
    torch.manual_seed(0)
    model = lenet()
    before = [p.detach().clone() for p in model.parameters()]
    method = METHODS.get("bat")(model, {"eps": 0.3, "step_size": 0.1, "steps": 2})
    loss, stats = method.loss(*batch(8, (1, 28, 28)), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and set(stats) >= {"loss", "clean_acc", "adv_acc", "kl"}
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# ---- LeNet -------------------------------------------------------------------------------

def test_lenet_is_the_authors_lenet_for_mnist():
    model = lenet().eval()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    # conv5(1→32) 832 + conv5(32→64) 51,264 + fc(1024→1024) 1,049,600 + fc(1024→10) 10,250
    assert sum(p.numel() for p in model.parameters()) == 1_111_946
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    feats = F.max_pool2d(F.relu(model.conv2(F.max_pool2d(F.relu(model.conv1(torch.rand(1, 1, 28, 28))), 2))), 2)
    assert feats.shape[1:] == (64, 4, 4)          # 64·4·4 = 1024 inputs to fc1 at 28×28, no pooling added
    for shape, classes in (((3, 32, 32), 100), ((3, 64, 64), 200)):
        out = build("lenet", classes, shape[0]).eval()(torch.rand(2, *shape))
        assert out.shape == (2, classes)


# ---- the cyclic schedule -----------------------------------------------------------------

def lrs_of(cfg, epochs, steps, lr=0.3, momentum=False):
    opt = build_optimizer(tiny_model().parameters(), {"name": "sgd", "lr": lr, "momentum": 0.9})
    sched = build_schedule(opt, cfg, epochs, steps)
    out, mom = [], []
    for _ in range(epochs * steps):
        out.append(opt.param_groups[0]["lr"])
        mom.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    return out, mom, opt.param_groups[0]["lr"]


@pytest.mark.parametrize("pct", [0.5, 0.3])
def test_cyclic_schedule_shape(pct):
    epochs, steps = 30, 20
    total = epochs * steps
    lrs, moms, after = lrs_of({"name": "cyclic", "pct_start": pct}, epochs, steps)
    peak = max(range(total), key=lrs.__getitem__)
    assert lrs[0] == 0.0 and after == pytest.approx(0.0, abs=1e-12)           # starts and ends at 0
    assert peak == round(pct * total) and lrs[peak] == pytest.approx(0.3)    # peak position and value
    up, down = lrs[: peak + 1], lrs[peak:]
    assert all(b > a for a, b in zip(up, up[1:])) and all(b < a for a, b in zip(down, down[1:]))
    assert lrs[peak // 2] == pytest.approx(0.3 * (peak // 2) / (pct * total))            # linear up
    assert lrs[-1] == pytest.approx(0.3 / ((1 - pct) * total))                            # linear down
    assert set(moms) == {0.9}                                                             # momentum fixed


@pytest.mark.parametrize("cycle", [False, True])
def test_cyclic_equals_torch_cycliclr(cycle):
    """BAT's library: CyclicLR(base_lr=0, max_lr=0.3, step_size_up=step_size_down=steps/2)."""
    epochs, steps = 7, 13
    total = epochs * steps
    ours = build_optimizer(tiny_model().parameters(), {"name": "sgd", "lr": 0.3, "momentum": 0.9})
    ref = build_optimizer(tiny_model().parameters(), {"name": "sgd", "lr": 0.3, "momentum": 0.9})
    s1 = build_schedule(ours, {"name": "cyclic", "pct_start": 0.5, "cycle_momentum": cycle}, epochs, steps)
    s2 = torch.optim.lr_scheduler.CyclicLR(ref, base_lr=0.0, max_lr=0.3, step_size_up=total / 2,
                                           step_size_down=total / 2, cycle_momentum=cycle)
    for _ in range(total):
        for key in ("lr", "momentum"):
            assert ours.param_groups[0][key] == pytest.approx(ref.param_groups[0][key], abs=1e-9)
        ours.step(), ref.step(), s1.step(), s2.step()


def test_cyclic_resumes_from_its_state():
    opt = build_optimizer(tiny_model().parameters(), {"name": "sgd", "lr": 0.3})
    sched = build_schedule(opt, {"name": "cyclic"}, 4, 10)
    for _ in range(17):
        opt.step(), sched.step()
    opt2 = build_optimizer(tiny_model().parameters(), {"name": "sgd", "lr": 0.3})
    sched2 = build_schedule(opt2, {"name": "cyclic"}, 4, 10)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    for _ in range(10):
        assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
        opt.step(), sched.step(), opt2.step(), sched2.step()


# ---- the spec ------------------------------------------------------------------------------

def test_planned_recipes_follow_the_paper():
    from bench.plan import Plan

    plan = Plan("paper", papers=["bat"])
    runs = list(plan.runs.values())
    mnist = [r.config for r in runs if r.dataset == "mnist"]
    assert {0.3, 0.45} <= {c["attack"]["eps"] for c in mnist}      # Table 1; Fig. 3 adds its ε grid
    for c in mnist:
        assert c["model"] == {"name": "lenet"} and c["epochs"] == 50
        assert c["schedule"] == {"name": "piecewise", "milestones": [30, 40], "gamma": 0.1}
        assert (c["attack"]["steps"], c["attack"]["step_size"]) == (40, 0.02)
        expected = {"name": "sgd", "lr": 0.01, "momentum": 0.9} if c["method"]["name"] == "mart" \
            else {"name": "adam", "lr": 0.001}
        assert c["optimizer"] == expected
    wrn = [r.config for r in runs if r.config["model"].get("widen") == 10]
    rst = [c for c in wrn if c["data"].get("extra")]       # Table 3: robust self-training
    assert len(rst) == 24 and {c["attack"]["eps"] for c in rst} == {"8/255", "16/255"}
    for c in rst:
        assert c["data"]["extra"] == {"dataset": "ti500k", "fraction": 0.5, "n": None}
        assert c["epochs"] == 200 and c["batch_size"] == 256 and c["schedule"] == {"name": "cosine"}
        assert (c["attack"]["steps"], c["attack"]["step_size"], c["selection"]["metric"]) == (10, "2/255", "last")
    cyclic = [c for c in wrn if c["schedule"]["name"] == "cyclic"]
    assert cyclic and all(c["epochs"] == 30 and c["optimizer"]["lr"] == 0.3 and c["schedule"]["pct_start"] == 0.5
                          and c["optimizer"]["weight_decay"] == 5e-4 for c in cyclic)
    # Table B.1's runs (the figures' probing runs, their first 40 epochs, are checked in test_probes)
    step = [c for c in wrn if c["schedule"]["name"] == "piecewise" and "probes" not in c]
    assert {c["attack"]["eps"] for c in step} == {"8/255", "12/255", "16/255"}
    for c in step:
        assert c["epochs"] == 100 and c["schedule"]["milestones"] == [40, 60, 80]
        sel = c["selection"]
        assert sel["metric"] == "robust" and sel["n_test"] == 128 and sel["every"] == 1
        assert sel["attack"]["steps"] == 10 and sel["attack"]["eps"] == c["attack"]["eps"]
    bats = [r.config["method"] for r in runs if r.config["method"]["name"] == "bat"]
    assert {b["m"] for b in bats} == {2} and {b["beta"] for b in bats} == {1.0, 2.0, 3.0, 5.0, 10.0}
    for key, ev in plan.evals.items():
        if "probe" in ev.protocol:      # records of a training-time probe: no attack
            continue
        a = ev.protocol["attack"] if "attack" in ev.protocol else ev.protocol["measure"].get("attack", {})
        if a["name"] == "pgd" and a.get("steps") == 50:
            assert a["restarts"] == 10 and a["random_start"] == "uniform"
            assert a["step_size"] == (0.01 if plan.run(ev.run_id).dataset == "mnist" else "2/255")


# ---- the published numbers -------------------------------------------------------------------
# (table, setting, row) → the paper's printed line(s), in its column order; for Table B.1 the
# final-model line, then the (ES) line. Copied by hand from bat.md.
PRINTED = {
    ("table1", "e30", "at"): ["98.79±0.23 91.69±1.25 88.64±0.61"],
    ("table1", "e30", "trades"): ["98.89±0.01 93.70±0.01 92.31±0.21"],
    ("table1", "e30", "mart"): ["98.78±0.16 92.37±1.21 89.62±1.44"],
    ("table1", "e30", "bat"): ["98.79±0.06 93.97±0.16 92.19±0.13"],
    ("table1", "e45", "at"): ["11.35±0.00 11.35±0.00 11.35±0.00"],
    ("table1", "e45", "trades"): ["99.42±0.05 11.34±0.01 0.53±0.26"],
    ("table1", "e45", "mart"): ["13.13±2.54 7.80±3.73 0.93±1.32"],
    ("table1", "e45", "bat"): ["97.72±0.26 88.20±0.57 76.09±1.65"],
    ("table2", "e8", "at"): ["85.65±0.33 53.64±0.03 50.87±0.22"],
    ("table2", "e8", "trades"): ["82.22±0.12 52.14±0.08 48.90±0.35"],
    ("table2", "e8", "mart"): ["77.51±0.46 53.87±0.08 48.25±0.06"],
    ("table2", "e8", "bat"): ["84.84±0.28 55.64±0.37 52.41±0.02"],
    ("table2", "e16", "at"): ["72.43±0.01 29.01±0.13 24.24±0.51"],
    ("table2", "e16", "trades"): ["70.01±0.44 24.52±0.06 14.63±0.22"],
    ("table2", "e16", "mart"): ["65.97±0.54 32.65±0.40 23.23±0.14"],
    ("table2", "e16", "bat"): ["77.56±0.01 30.79±0.35 25.06±0.37"],
    ("table3", "e8", "at"): ["91.53 59.89 58.41"],
    ("table3", "e8", "trades"): ["89.73 61.87 59.45"],
    ("table3", "e8", "mart"): ["89.71 62.11 57.97"],
    ("table3", "e8", "bat"): ["89.61 62.38 59.54"],
    ("table3", "e16", "at"): ["83.36 29.48 25.54"],
    ("table3", "e16", "trades"): ["78.20 34.14 24.96"],
    ("table3", "e16", "mart"): ["81.24 33.17 25.77"],
    ("table3", "e16", "bat"): ["84.07 33.78 27.70"],
    ("tableb1", "e8", "at"): ["86.85±0.14 57.33±0.23 45.33±0.49 44.61±0.45", "84.59±0.01 59.19±0.45 53.09±0.13 50.39±0.06"],
    ("tableb1", "e8", "trades"): ["86.37±0.36 61.24±0.30 51.81±0.04 50.05±0.03", "82.85±0.71 57.73±0.35 52.24±0.59 49.25±0.37"],
    ("tableb1", "e8", "mart"): ["84.79±0.11 59.81±0.73 49.91±0.36 46.16±0.08", "78.02±0.99 57.19±0.73 53.45±0.14 48.19±0.28"],
    ("tableb1", "e8", "bat"): ["85.36±0.01 57.53±0.41 47.64±0.20 46.28±0.28", "84.02±0.35 58.92±0.03 55.13±0.06 51.68±0.31"],
    ("tableb1", "e12", "at"): ["82.46±0.17 47.73±0.08 29.97±0.04 27.98±0.15", "78.29±0.05 49.75±0.41 39.77±0.35 35.82±0.17"],
    ("tableb1", "e12", "trades"): ["81.06±0.59 50.59±0.19 33.86±1.44 25.21±1.92", "78.17±2.02 48.00±2.03 37.27±0.65 30.35±3.30"],
    ("tableb1", "e12", "mart"): ["79.11±0.23 51.23±0.16 37.86±0.85 31.74±0.56", "72.04±0.32 48.45±1.03 41.82±0.31 34.09±0.87"],
    ("tableb1", "e12", "bat"): ["81.53±0.38 48.64±0.23 33.42±0.62 30.73±0.42", "80.65±0.04 49.47±0.27 41.08±0.40 36.03±0.21"],
    ("tableb1", "e16", "at"): ["79.10±0.35 41.31±0.71 19.05±0.03 16.15±0.11", "72.43±0.01 42.48±0.18 28.78±0.16 24.23±0.53"],
    ("tableb1", "e16", "trades"): ["76.69±2.60 40.29±1.94 23.83±6.12 18.68±4.65", "75.01±0.46 41.30±0.28 28.03±0.06 21.86±0.18"],
    ("tableb1", "e16", "mart"): ["76.04±0.00 45.14±0.18 26.53±0.31 19.62±0.52", "68.09±0.45 41.83±0.13 32.61±0.40 23.36±0.19"],
    ("tableb1", "e16", "bat"): ["78.59±0.43 42.12±0.16 23.61±0.43 19.95±0.48", "76.06±0.01 41.03±0.43 30.91±0.35 25.06±0.34"],
    ("tableb2", "e8", "at"): ["82.36 57.48 51.87 48.06"],
    ("tableb2", "e8", "trades"): ["80.91 55.45 51.94 47.88"],
    ("tableb2", "e8", "bat"): ["83.56 56.27 52.20 48.44"],
    ("tableb2", "e16", "at"): ["69.75 40.17 29.47 23.02"],
    ("tableb2", "e16", "trades"): ["68.26 35.23 26.13 18.01"],
    ("tableb2", "e16", "bat"): ["77.02 36.64 27.22 21.78"],
    ("tableb2", "e16", "bat10"): ["73.17 37.73 29.98 23.65"],
    ("tableb3", "cifar100", "at"): ["55.92 30.13 26.51 23.70"],
    ("tableb3", "cifar100", "trades"): ["54.56 29.82 26.48 23.28"],
    ("tableb3", "cifar100", "bat"): ["53.67 29.96 27.76 23.98"],
}


def _numbers(line: str) -> list[tuple[float, float | None]]:
    out = []
    for tok in line.split():
        v, _, s = tok.partition("±")
        out.append((float(v), float(s) if s else None))
    return out


@pytest.mark.skipif(not PAPER.exists(), reason="../shared/papers/bat.md not present")
def test_hand_copied_lines_are_in_the_paper():
    text = re.sub(r"\s+", " ", re.sub(r"</?b>", "", PAPER.read_text()))
    for key, lines in PRINTED.items():
        for line in lines:
            assert line in text, (key, line)


def test_every_published_number_of_every_bat_table_is_in_bench_published_csv():
    out = subprocess.run([sys.executable, "-m", "bench", "published", "--csv"], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    # the tables' numbers (the figures' few, printed in the text, are checked in test_bat_figures.py)
    rows = [r for r in csv.DictReader(io.StringIO(out)) if r["paper"] == "bat" and r["table"].startswith("table")]
    got: dict[tuple[str, str, str], list[tuple[float, float | None]]] = {}
    for r in rows:      # csv order is the spec's column order
        got.setdefault((r["table"].lower(), r["setting"], r["row"]), []).append(
            (float(r["value"]), float(r["std"]) if r["std"] else None))
    expected = {k: [n for line in lines for n in _numbers(line)] for k, lines in PRINTED.items()}
    assert got == expected
    assert len(rows) == 208 and {r["table"].lower() for r in rows} == {"table1", "table2", "table3", "tableb1",
                                                                       "tableb2", "tableb3"}
