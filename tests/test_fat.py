"""FAT (Zhang et al., ICML 2020): PGD-K-τ, the three FAT objectives, the Small CNN, the
class subset, the layer embeddings, the spec and its plan. Fast tier, CPU, seconds."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from bench.attacks import build as build_attack
from bench.methods import METHODS

from conftest import REPO, tiny_model

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


# ---- models ----------------------------------------------------------------------------------

def test_small_cnn_is_the_authors_network():
    from bench.models import build

    model = build("small_cnn", 10)
    # 6 convs with biases + 6 BatchNorms + fc 3136→256 + fc 256→10 (models/small_cnn.py of the code)
    assert sum(p.numel() for p in model.parameters()) == 1_639_282
    assert sum(p.numel() for p in build("small_cnn", 2).parameters()) == 1_637_226
    names = {n for n, _ in model.named_modules()}
    assert {"block1_conv1", "batchnorm3_2", "block3_pool1", "fc1", "fc2"} <= names
    assert model.fc1.in_features == 196 * 4 * 4 and model.fc1.out_features == 256
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    small = build({"name": "small_cnn", "width": 16}, 10).eval()
    assert small(torch.rand(2, 3, 32, 32)).shape == (2, 10) and small.block3_conv1.out_channels == 49


def test_wide_resnet_aliases_and_the_codes_initialisation():
    from bench.models import build, expand

    assert expand("wrn32_10") == expand("wrn34_10") == {"name": "wide_resnet", "depth": 34, "widen": 10}
    counts = {a: sum(p.numel() for p in build(a, 10).parameters()) for a in ("wrn32_10", "wrn58_10", "wrn40_4")}
    assert counts == {"wrn32_10": 46_160_474, "wrn58_10": 84_885_594, "wrn40_4": 8_949_210}
    torch.manual_seed(0)
    model = build({"name": "wide_resnet", "depth": 10, "widen": 4, "init": "he_fanout"}, 10)
    conv = model.layers[1].conv1          # 3×3, 128 outputs: std √(2 / (9·128))
    assert conv.weight.std().item() == pytest.approx((2 / (9 * 128)) ** 0.5, rel=0.05)
    assert torch.equal(model.linear.bias, torch.zeros(10)) and torch.equal(model.bn.weight, torch.ones(256))
    with pytest.raises(ValueError, match="init"):
        build({"name": "wide_resnet", "depth": 10, "widen": 1, "init": "xavier"}, 10)


def test_numbered_layers_are_read_with_hooks_and_match_the_forward():
    from bench.measures.layer_embedding import layer_outputs, numbered_layers
    from bench.models import build

    torch.manual_seed(0)
    scnn = build({"name": "small_cnn", "width": 8}, 2).eval()
    x = torch.rand(3, 3, 32, 32)
    out = layer_outputs(scnn, x, [1, 6, 7, 8])
    assert out[1].shape == (3, 8 * 32 * 32) and out[6].shape == (3, 24 * 8 * 8) and out[7].shape == (3, 32)
    assert torch.allclose(out[8], scnn(x)) and (out[7] >= 0).all()
    h = scnn.block3_pool1(out[6].view(3, 24, 8, 8))
    assert torch.allclose(out[7], F.relu(scnn.fc1(h.flatten(1))), atol=1e-6)
    assert all(not m._forward_hooks for m in scnn.modules())          # the hooks are gone
    wrn = build({"name": "wide_resnet", "depth": 40, "widen": 2}, 10).eval()
    table = numbered_layers(wrn)
    assert max(table) == 41 and table[4] == table[3] == ("layers.0", False) and table[17][0] == "layers.6"
    assert table[38] == ("layers.16", False) and table[40] == ("layers.17", False) and table[41] == ("linear", False)
    out = layer_outputs(wrn, x, [38, 40, 41])
    assert out[38].shape == out[40].shape == (3, 128 * 8 * 8) and torch.allclose(out[41], wrn(x))
    with pytest.raises(Exception, match="#1–#41"):
        layer_outputs(wrn, x, [42])


def test_mixing_measures_on_known_configurations():
    from bench.measures.layer_embedding import mixing

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 2
    apart = torch.randn(200, 2, generator=g) * 0.1 + labels[:, None] * 10.0
    swapped = torch.randn(200, 2, generator=g) * 0.1 + (1 - labels[:, None]) * 10.0   # each on the other's area
    mixed = torch.randn(200, 2, generator=g)
    m = mixing({"natural": apart, "adversarial": swapped, "friendly": mixed}, labels, 10)
    assert m["purity"]["natural"] == 100.0 and m["crossover"]["natural"] == 0.0
    assert m["purity"]["adversarial"] == 100.0 and m["crossover"]["adversarial"] == 100.0   # apart, but crossed over
    assert 30 < m["purity"]["friendly"] < 70


# ---- data, checkpoints --------------------------------------------------------------------------

def test_class_subset_is_relabelled_and_fingerprinted():
    from bench.data.store import load
    from bench.errors import SpecError

    full = load("cifar10", source="synthetic", synthetic_size=(200, 100))
    sub = load("cifar10", source="synthetic", synthetic_size=(200, 100), classes=[4, 2])
    assert sub.info.num_classes == 2 and sub.fingerprint["classes"] == [4, 2]
    assert len(sub.train.y) == int(((full.train.y == 2) | (full.train.y == 4)).sum())
    assert torch.equal(sub.train.x, full.train.x[(full.train.y == 2) | (full.train.y == 4)])
    assert torch.equal(sub.train.y, (full.train.y[(full.train.y == 2) | (full.train.y == 4)] == 2).long())
    with pytest.raises(SpecError):
        load("cifar10", source="synthetic", synthetic_size=(20, 10), classes=[2, 2])


class TradesWRN(torch.nn.Module):
    """The TRADES code's Wide ResNet layout and names (models/wideresnet.py), written out
    here as an independent reference: pre-activation blocks, convShortcut, sub_block1."""

    class Block(torch.nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.bn1, self.relu1 = torch.nn.BatchNorm2d(cin), torch.nn.ReLU()
            self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn2, self.relu2 = torch.nn.BatchNorm2d(cout), torch.nn.ReLU()
            self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.equal = cin == cout
            self.convShortcut = None if self.equal else torch.nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

        def forward(self, x):
            if not self.equal:
                x = self.relu1(self.bn1(x))
                out = x
            else:
                out = self.relu1(self.bn1(x))
            out = self.conv2(self.relu2(self.bn2(self.conv1(out))))
            return (x if self.equal else self.convShortcut(x)) + out

    class Stage(torch.nn.Module):
        def __init__(self, n, cin, cout, stride):
            super().__init__()
            self.layer = torch.nn.Sequential(*[TradesWRN.Block(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                               for i in range(n)])

        def forward(self, x):
            return self.layer(x)

    def __init__(self, depth=10, widen=2):
        super().__init__()
        n, w = (depth - 4) // 6, [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = torch.nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.block1, self.sub_block1 = self.Stage(n, 16, w[1], 1), self.Stage(n, 16, w[1], 1)
        self.block2, self.block3 = self.Stage(n, w[1], w[2], 2), self.Stage(n, w[2], w[3], 2)
        self.bn1, self.relu, self.fc = torch.nn.BatchNorm2d(w[3]), torch.nn.ReLU(), torch.nn.Linear(w[3], 10)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(F.avg_pool2d(self.relu(self.bn1(out)), 8).flatten(1))


def test_trades_style_checkpoints_load_into_the_suites_wide_resnet(tmp_path, monkeypatch):
    from bench.pretrained import weights

    torch.manual_seed(0)
    ref = TradesWRN(depth=16, widen=2)
    for m in ref.modules():          # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 1.5), m.weight.data.uniform_(0.5, 1.5)
    ref.eval()
    (tmp_path / "checkpoints").mkdir()
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}},
               tmp_path / "checkpoints" / "mart.pt")
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    cfg = {"model": {"name": "wide_resnet", "depth": 16, "widen": 2}, "seed": 0,
           "pretrained": {"file": "checkpoints/mart.pt", "names": "trades_wrn"}}
    model, origin = weights(cfg, 10, 3)
    x = torch.rand(4, 3, 32, 32)
    assert torch.allclose(model.eval()(x), ref(x), atol=1e-5) and origin["sha256"]
    with pytest.raises(Exception, match="does not fit"):        # without the adapter the names differ
        weights({**cfg, "pretrained": {"file": "checkpoints/mart.pt"}}, 10, 3)


# ---- the spec and its plan -------------------------------------------------------------------
PAPER = REPO.parent / "shared" / "papers" / "fat.md"
# (table, setting, row) → the paper's printed line, copied by hand from fat.md, in the
# table's column order ("-" cells are absent)
PRINTED = {
    ("table1", "cifar10", "madry"): "87.30 56.10 45.80 46.80",
    ("table1", "cifar10", "cat"): "77.43 57.17 46.06 42.28",
    ("table1", "cifar10", "dat"): "85.03 63.53 48.70 47.27",
    ("table1", "cifar10", "fat_e8"): "89.34 ± 0.221 65.52 ± 0.355 46.13 ± 0.409 46.82 ± 0.517 45.31 ± 0.531",
    ("table1", "cifar10", "fat_e16"): "87.00 ± 0.203 65.94 ± 0.244 49.86 ± 0.328 48.65 ± 0.176 49.56 ± 0.255",
    ("table2", "beta1", "trades"): "88.64 56.38 49.14",
    ("table2", "beta1", "fat_e8"): "89.94 ± 0.303 61.00 ± 0.418 49.70 ± 0.653 49.35 ± 0.363 48.35 ± 0.240",
    ("table2", "beta6", "trades"): "84.92 61.06 56.61 54.47 55.47",
    ("table2", "beta6", "fat_e8"): "86.60 ± 0.548 61.97 ± 0.570 55.98 ± 0.209 54.29 ± 0.173 55.34 ± 0.291",
    ("table2", "beta6", "fat_e16"): "84.39 ± 0.030 61.73 ± 0.131 57.12 ± 0.233 54.36 ± 0.177 56.07 ± 0.155",
    ("table3", "wrn34", "trades"): "84.92 67.00 57.18 54.72",
    ("table3", "wrn34", "fat_e8"): "86.38 ± 0.548 67.64 ± 0.572 56.65 ± 0.262 54.51 ± 0.299",
    ("table3", "wrn34", "fat_e16"): "84.39 ± 0.030 67.38 ± 0.370 57.67 ± 0.198 54.62 ± 0.140",
    ("table3", "wrn58", "fat_e8"): "87.09 68.7 57.17 55.43",
    ("table3", "wrn58", "fat_e16"): "85.28 68.08 58.39 55.89",
    ("table4", "wrn34", "mart"): "83.62 67.38 58.24 53.67",
    ("table4", "wrn34", "fat_e8"): "86.40 ± 0.071 68.94 ± 0.195 57.89 ± 0.144 52.28 ± 0.110",
    ("table4", "wrn34", "fat_e16"): "84.39 ± 0.390 68.52 ± 0.297 59.13 ± 0.180 52.85 ± 0.459",
    ("table4", "wrn58", "fat_e8"): "87.10 69.52 58.57 52.73",
    ("table4", "wrn58", "fat_e16"): "85.19 69.00 59.82 53.01",
}
CITED = {("table1", "madry"), ("table1", "cat"), ("table1", "dat"), ("table2", "trades")}


def _printed_numbers(line):
    toks = line.replace(" ± ", "±").split()
    return [(float(t.split("±")[0]), float(t.split("±")[1]) if "±" in t else None) for t in toks]


@pytest.mark.skipif(not PAPER.exists(), reason="../shared/papers/fat.md not present")
def test_hand_copied_lines_are_in_the_paper():
    import re

    text = re.sub(r"\s+", " ", PAPER.read_text().replace("\\pm", "±").replace("$", ""))
    for key, line in PRINTED.items():
        assert line in text, key


def test_every_published_number_is_in_bench_published_csv_with_cited_rows_marked():
    import csv
    import io
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "bench", "published", "--csv"], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    rows = [r for r in csv.DictReader(io.StringIO(out)) if r["paper"] == "fat"]
    got: dict = {}
    for r in rows:
        got.setdefault((r["table"], r["setting"], r["row"]), []).append(
            (float(r["value"]), float(r["std"]) if r["std"] else None))
        assert bool(r["cited"]) == ((r["table"], r["row"]) in CITED), r
    assert got == {k: _printed_numbers(v) for k, v in PRINTED.items()}
    assert len(rows) == 85 and sum(bool(r["cited"]) for r in rows) == 20
    assert {r["cited"] for r in rows if r["table"] == "table1" and r["cited"]} == {
        "Wang et al. (2019), DAT, as quoted by the FAT paper"}


@pytest.fixture(scope="module")
def paper_plan():
    from bench.plan import Plan

    return Plan("paper", papers=["fat"])


def _configs(plan, stem, row=None, setting=None):
    t = plan.table(stem)
    runs = sorted({r for c in t.cells if (row is None or c.row == row) and (setting is None or c.setting == setting)
                   for r in c.runs})
    return [plan.run(r).config for r in runs]


def test_paper_scale_runs_have_the_papers_settings(paper_plan):
    plan = paper_plan
    t1 = _configs(plan, "tables/fat_table1")
    assert len(t1) == 10 and {c["attack"]["eps"] for c in t1} == {"8/255", "16/255"}
    for c in t1:
        assert c["model"] == {"name": "wide_resnet", "depth": 34, "widen": 10, "init": "he_fanout"}
        assert c["epochs"] == 120 and c["method"] == {"name": "fat"}
        assert c["schedule"] == {"name": "piecewise", "milestones": [59, 89, 109], "factors": [0.1, 0.01, 0.005]}
        assert c["epoch_schedules"] == {"attack.tau": {"milestones": [50, 90], "values": [0, 1, 2]}}
        assert (c["attack"]["step_size"], c["attack"]["steps"], c["optimizer"]["weight_decay"]) == (0.007, 10, 2e-4)
        assert c["selection"]["metric"] == "last" and c["data"] == {"source": "real", "n_train": None}
    t2 = _configs(plan, "tables/fat_table2")
    assert len(t2) == 9 and {c["method"]["beta"] for c in t2} == {1.0, 6.0}
    for c in t2:
        assert c["epochs"] == 85 and c["schedule"]["milestones"] == [74]
        assert c["epoch_schedules"]["attack.tau"] == {"milestones": [30, 50, 70], "values": [0, 1, 2, 3]}
    t4 = _configs(plan, "tables/fat_table4", setting="wrn34")
    assert all(c["epochs"] == 90 and c["schedule"]["milestones"] == [59, 89] and c["method"]["beta"] == 6.0
               and c["epoch_schedules"]["attack.tau"]["milestones"] == [20, 40, 60, 80] for c in t4 if "method" in c)
    assert len(_configs(plan, "tables/fat_table4", setting="wrn58")) == 2          # one run per ε_train
    f4 = _configs(plan, "figures/fat_fig4")
    assert len(f4) == 110 and {c["attack"]["tau"] for c in f4} == set(range(11))
    assert all(c["epochs"] == 80 and c["schedule"]["milestones"] == [59] and "epoch_schedules" not in c for c in f4)
    f6 = _configs(plan, "figures/fat_fig6")
    assert len(f6) == 36 and all(c["optimizer"]["lr"] == 0.01 for c in f6)
    assert all(c["attack"]["step_size"] == pytest.approx(c["attack"]["eps"] / 10) for c in f6)
    assert {c["attack"]["eps"] for c in f6} == {0.03, 0.045, 0.06, 0.075, 0.09, 0.105, 0.12, 0.135, 0.15}
    f9 = _configs(plan, "figures/fat_fig9")
    assert all(c["attack"]["project"] is False and c["attack"]["random_start"] == "none" for c in f9)
    assert {c["attack"].get("tau") for c in f9} == {0, 1, 3, 10}
    f3 = _configs(plan, "figures/fat_fig3")
    assert f3[0]["data"]["classes"] == [2, 4] and f3[0]["method"] == {"name": "standard"}
    assert {c["augment"] for c in _configs(plan, "figures/fat_fig7")} == {"crop_flip"}     # SVHN as the code
    # the protocols as each table states them
    proto = lambda stem, col: plan.evals[next(c for c in plan.table(stem).cells if c.column == col and c.evals
                                              ).evals[0]].protocol
    assert proto("tables/fat_table1", "pgd20")["attack"]["step_size"] == "0.031/4"
    assert proto("tables/fat_table2", "pgd20")["attack"]["random_start"] == "none"
    assert proto("tables/fat_table2", "fgsm")["attack"]["name"] == "fgsm"
    assert proto("tables/fat_table3", "fgsm")["attack"]["random_start"] == "uniform"
    assert proto("tables/fat_table4", "pgd20")["attack"]["step_size"] == "0.8/255"
    cw = proto("tables/fat_table1", "cw")["attack"]
    assert (cw["loss"], cw["kappa"], cw["steps"]) == ("cw", 50.0, 30)
    assert proto("figures/fat_fig6", "pgd20_16")["attack"]["eps"] == "16/255"
    assert all(ev.protocol.get("checkpoint") == "last" for ev in plan.evals.values() if "history" not in ev.protocol)


def test_the_plan_shares_what_two_targets_need(paper_plan):
    plan = paper_plan
    t2 = {r for c in plan.table("tables/fat_table2").cells if c.setting == "beta6" for r in c.runs}
    t3 = {r for c in plan.table("tables/fat_table3").cells if c.setting == "wrn34" and c.row != "trades"
          for r in c.runs}
    assert len(t3) == 6 and t3 <= t2                                    # Table 3 re-evaluates Table 2's models
    ev3 = {k for c in plan.table("figures/fat_fig3").cells for k in c.evals}
    ev11 = {k for c in plan.table("figures/fat_fig11").cells for k in c.evals}
    assert len(ev3) == 1 and ev3 == ev11                                 # Fig. 3 is Fig. 11's layer #7
    assert len(plan.runs) == 543                                         # 541 trained + 2 imported (inventory §5.2)
    assert sum("pretrained" in r.config for r in plan.runs.values()) == 2
    counts = {stem: len({r for c in t.cells for r in c.runs}) for stem, t in plan.tables.items()}
    assert counts["figures/fat_fig5"] == 24 and counts["figures/fat_fig7"] == 24 and counts["figures/fat_fig20"] == 36


def test_fat_needs_the_released_checkpoints_and_svhn():
    from bench.plan import Plan

    plan = Plan("mini", papers=["fat"])
    assert "file:checkpoints/mart_wrn34_10.pt" in plan.table("tables/mini/fat_table4").datasets
    assert "robustbench:cifar10/Linf/Zhang2019Theoretically" in plan.table("tables/mini/fat_table3").datasets
    assert "svhn" in plan.table("figures/mini/fat_fig7").datasets


# ---- training statistics and the smoke build ------------------------------------------------------

def test_fat_runs_record_bp_and_the_scheduled_tau(tmp_path):
    """A Table 1 run at the smoke scale, trained in-process: τ follows the rescaled schedule
    (0 in the first epoch, 1 in the second), every epoch records its BP count, and the
    history protocol of Fig. 5 summarises it."""
    from bench.evaluate import history_summary
    from bench.plan import Plan
    from bench.train import train

    plan = Plan("smoke", papers=["fat"])
    run_id = next(r for c in plan.table("tables/smoke/fat_table1").cells if c.row == "fat_e8" for r in c.runs)
    cfg = plan.run(run_id).config
    assert cfg["epoch_schedules"] == {"attack.tau": {"milestones": [1, 2], "values": [0, 1, 2]}}
    summary = train(run_id, cfg, tmp_path / run_id, progress=False)
    import json

    history = json.loads((tmp_path / run_id / "metrics.json").read_text())
    assert [h["attack.tau"] for h in history] == [0, 1]
    assert all(0 <= h["bp"] <= cfg["attack"]["steps"] for h in history) and summary["final"]["bp"] == history[-1]["bp"]
    assert summary["config"]["method"]["attack"]["name"] == "pgd_es"
    out = history_summary(history, {"m": {"key": "bp"}, "last": {"key": "bp", "stat": "last", "epochs": [2, 2]}})
    assert out["m"] == pytest.approx(sum(h["bp"] for h in history) / 2) and out["last"] == history[1]["bp"]


def test_smoke_fig3_builds_through_snakemake(tmp_path):
    """Fig. 3 end to end at the smoke scale: a two-class Small CNN, the layer-embedding
    measure (PGD and PGD-K-0 data, PCA, t-SNE, mixing), its claims and the embedding grid."""
    import csv
    import json

    from test_workflow import snakemake

    env = {"BENCH_RESULTS": str(tmp_path / "results"), "BENCH_CACHE": str(tmp_path / "cache")}
    snakemake(tmp_path, "--cores", "2", "figures/smoke/fat_fig3.png", env=env)
    for ext in (".png", ".pdf", ".csv", ".md"):
        assert (tmp_path / f"figures/smoke/fat_fig3{ext}").stat().st_size > 0
    md = (tmp_path / "figures/smoke/fat_fig3.md").read_text()
    assert "## Claims" in md and "not run" not in md.split("## Claims")[0]
    assert "Fig. 3 (Sec. 4.2), layer #7 (PCA)" in md and "smoke scale" in md
    points = list(csv.DictReader(open(tmp_path / "figures/smoke/fat_fig3.csv")))
    assert {p["kind"] for p in points} == {"natural", "adversarial", "friendly"} and {p["class"] for p in points} == {
        "bird", "deer"}
    evals = list((tmp_path / "results/smoke/evals").glob("*/embed_scnn-*.json"))
    result = json.loads(evals[0].read_text())
    assert result["classes"] == [0, 1] and result["attacks"]["friendly"]["tau"] == 0
    assert result["attacks"]["friendly"]["name"] == "pgd_es" and result["attacks"]["adversarial"]["name"] == "pgd"
    run = json.loads(next((tmp_path / "results/smoke/runs").glob("*/run.json")).read_text())
    assert run["dataset"]["classes"] == [2, 4] and run["config"]["model"] == {"name": "small_cnn", "width": 8}


def test_released_checkpoints_absent_stop_before_any_job(tmp_path):
    """Tables 3 and 4 at the mini scale on this machine: the JPEG CIFAR-10 is there, the
    released TRADES and MART models are not: one clear message naming the files, no job."""
    from conftest import SHARED_DATA
    from test_workflow import snakemake

    if not (SHARED_DATA / "cifar10-jpeg").exists():
        pytest.skip("the JPEG CIFAR-10 substitute is not under ../shared/data")
    env = {"BENCH_DATA": str(SHARED_DATA), "BENCH_RESULTS": str(tmp_path / "results")}
    out = snakemake(tmp_path, "--cores", "1", "tables/mini/fat_table3.md", "tables/mini/fat_table4.md",
                    env=env, check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "partial=1" in text
    assert "robustbench/cifar10/Linf/Zhang2019Theoretically.pt" in text or "checkpoints/mart_wrn34_10.pt" in text
    assert not (tmp_path / "results").exists() and not (tmp_path / "tables").exists()


def test_small_cnn_pools_only_off_its_native_size():
    """At 32×32 the 4×4 average pool before fc1 is the identity: the authors' forward."""
    from bench.models import build

    torch.manual_seed(0)
    m = build({"name": "small_cnn", "width": 8}, 10).eval()
    x = torch.rand(2, 3, 32, 32)
    h = x
    for b in (1, 2, 3):
        for k in (1, 2):
            h = m.activ(getattr(m, f"batchnorm{b}_{k}")(getattr(m, f"block{b}_conv{k}")(h)))
        h = getattr(m, f"block{b}_pool1")(h)
    assert torch.equal(m(x), m.fc2(m.activ(m.fc1(h.view(2, -1)))))


FIG_FIELDS = ["setting", "row", "column", "mean", "std", "n", "values", "dataset_sha256", "x"]
FIG_ROW = dict(setting="scnn", row="fat_0", column="natural", mean="40.0", std="1.0", n="3", values="39 40 41",
               dataset_sha256="h", x="0")


@pytest.fixture
def fig_csvs(tmp_path, monkeypatch):
    """A workspace with a reference folder of its own; writes a figure's per-cell CSV."""
    import csv

    from bench.report import regress

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(regress, "REFERENCE", tmp_path / "ref")
    (tmp_path / "figures/mini").mkdir(parents=True)

    def write(rows, name="fat_fig4", cols=FIG_FIELDS):
        with open(tmp_path / f"figures/mini/{name}.cells.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)

    return write


def test_figures_with_per_cell_csvs_pin_and_regress(tmp_path, fig_csvs):
    from bench.errors import BenchError
    from bench.report import regress

    fig_csvs([FIG_ROW, {**FIG_ROW, "row": "fat_1", "mean": "38.0", "x": "1"}])
    key = regress.data_key({("s", "r", "c"): FIG_ROW})
    assert regress.pin("figures/mini/fat_fig4") == tmp_path / f"ref/mini/{key}/fat_fig4.csv"
    assert regress.regress("figures/mini/fat_fig4") == []
    fig_csvs([{**FIG_ROW, "mean": "45.0"}, {**FIG_ROW, "row": "fat_1", "mean": "38.0", "x": "1"}])
    problems = regress.regress("figures/mini/fat_fig4")
    assert len(problems) == 1 and "scnn/fat_0/natural" in problems[0] and "Δ +5.00" in problems[0]
    fig_csvs([{"space": "pca", "x": "1"}], name="fat_fig3", cols=["space", "x"])
    with pytest.raises(BenchError, match="per-cell columns"):
        regress.pin("figures/mini/fat_fig3")


def test_regress_all_checks_every_pinned_target_of_a_scale(tmp_path, fig_csvs, capsys):
    from bench import cli
    from bench.report import regress

    fig_csvs([FIG_ROW])
    regress.pin("figures/mini/fat_fig4")
    fig_csvs([{**FIG_ROW, "mean": "45.0"}])                       # drifted
    assert regress.pinned_targets("mini") == ["figures/mini/fat_fig4"]
    with pytest.raises(SystemExit) as e:
        cli.main(["regress", "--all", "--scale", "mini"])
    err = capsys.readouterr().err
    assert e.value.code != 0 and "DRIFT figures/mini/fat_fig4: scnn/fat_0/natural" in err and "1 of 1 target" in err
    (tmp_path / "figures/mini/fat_fig4.cells.csv").unlink()
    with pytest.raises(SystemExit):
        cli.main(["regress", "--all", "--scale", "mini"])
    assert "ERROR figures/mini/fat_fig4: figures/mini/fat_fig4.cells.csv does not exist" in capsys.readouterr().err
