"""DRA (Hou et al., IJCNN 2022): the attack of Algorithm 1 against an independent per-example
implementation and its budget, mask, clamp and guards; the fine-tuning method (two updates per
batch, the replays, the ε schedule and the clean tail at each budget); the models; the plan
(shared vanilla runs, the tables' identities); the transcribed numbers; one smoke build.
Fast tier, CPU."""
from __future__ import annotations

import contextlib
import csv
import io
import math
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from bench import schedules
from bench.attacks import build as build_attack
from bench.attacks.dra import DRA, kept
from bench.errors import SpecError
from bench.fileio import read_json
from bench.methods import METHODS
from bench.models import build as build_model
from bench.plan import Plan
from bench.plan_model import published_cells
from bench.specs import load as load_spec
from bench.train import Updater, train

from conftest import REPO, tiny_model

PAPER = REPO.parent / "shared" / "papers" / "dra.md"


def batch(n=6, shape=(3, 32, 32), seed=0, lo=0.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tiny_model().eval()


def dra(model, **params):
    return build_attack({"name": "dra", **params}, model)


# ---- the attack: Algorithm 1 ---------------------------------------------------------------

def reference_dra(model, x, y, eps, steps, p, budget="per_pixel"):
    """Algorithm 1 written plainly, one example at a time (independent of bench.attacks.dra):
    T steps of α·g/s(g) with s = mean|g| (per pixel) or Σ|g| (ℓ1), clamped to [0, 1]; then the
    k = round(p·N) coordinates with the largest |g_{T−1}| keep x_T, the others x."""
    out = []
    alpha = eps / steps
    for xi, yi in zip(x, y):
        xt = xi.clone()
        for _ in range(steps):
            xt = xt.detach().requires_grad_(True)
            loss = F.cross_entropy(model(xt[None]), yi[None])
            g, = torch.autograd.grad(loss, xt)
            s = g.abs().sum() / (g.numel() if budget == "per_pixel" else 1)
            xt = (xt.detach() + alpha * g / s).clamp(0, 1)
        k = int(math.floor(p * xi.numel() + 0.5))
        order = torch.argsort(g.abs().flatten(), descending=True, stable=True)
        keep = torch.zeros(xi.numel(), dtype=torch.bool)
        keep[order[:k]] = True
        out.append(torch.where(keep.view_as(xi), xt, xi))
    return torch.stack(out)


def smooth_model():
    """A small smooth network (tanh): batched and per-example gradients agree to rounding, with
    no ReLU kink that a 1e-8 difference could flip."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.Tanh(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 15 * 15, 10)).eval()


@pytest.mark.parametrize("budget,eps,p", [("per_pixel", "1/255", "1/3"), ("per_pixel", "8/255", "2/3"),
                                          ("l1", 2.0, "1/3")])
def test_dra_agrees_with_an_independent_implementation(budget, eps, p):
    net = smooth_model()
    x, y = batch()
    ours = dra(net, eps=eps, steps=5, p=p, budget=budget)(x, y)
    ref = reference_dra(net, x, y, float(eval(str(eps))), 5, float(eval(p)), budget)
    assert torch.allclose(ours, ref, atol=1e-6), (ours - ref).abs().max()
    assert not torch.equal(ours, x)


def test_p0_returns_x_and_p1_applies_no_mask(model):
    x, y = batch()
    assert torch.equal(dra(model, p=0)(x, y), x)
    attack = dra(model, p=1)
    x_t, _ = attack.trajectory(x, y)
    assert torch.equal(attack(x, y), x_t)
    assert ((attack(x, y) - x) != 0).flatten(1).sum(1).min() > 3072 // 2   # every coordinate may move


@pytest.mark.parametrize("p,shape,k", [("1/3", (3, 32, 32), 1024), ("2/3", (1, 28, 28), 523), ("1/6", (3, 32, 32), 512),
                                       ("1/2", (3, 32, 32), 1536)])
def test_the_mask_keeps_exactly_round_pN_coordinates(p, shape, k):
    torch.manual_seed(0)
    m = (tiny_model() if shape[0] == 3 else build_model("trades_example_net", 10, 1)).eval()
    x, y = batch(shape=shape, lo=0.3, hi=0.7)          # interior: no coordinate is clamped back to x
    attack = dra(m, p=p, eps="1/255" if shape[0] == 3 else 0.1)
    assert attack.k(x) == k == kept(float(eval(p)), math.prod(shape), attack.rounding)
    changed = ((attack(x, y) - x) != 0).flatten(1).sum(1)
    assert changed.tolist() == [k] * len(x)
    # per channel: k per channel of H·W; floor/ceil roundings
    assert dra(m, p="1/3", rank_scope="channel").k(x) == round(shape[1] * shape[2] / 3)
    assert kept(2 / 3, 784, dra(m, rounding="floor").rounding) == 522 and kept(1 / 3, 3072, dra(m).rounding) == 1024


def test_the_budget_holds_per_step(model):
    x, y = batch()
    n = x[0].numel()
    for budget, eps, per_step in (("per_pixel", 1 / 255, n * (1 / 255) / 5), ("l1", 2.0, 2.0 / 5)):
        attack = dra(model, eps=eps, steps=5, budget=budget)
        g = attack.gradient(x, y, None, None)
        assert torch.allclose(attack.step(g, None).abs().flatten(1).sum(1), torch.full((len(x),), per_step), rtol=1e-5)
        # the whole attack without clamp or mask: T steps add up to at most T·(per step) = the budget
        free = dra(model, eps=eps, steps=5, budget=budget, clamp="none", p=1)
        total = (free(x, y) - x).abs().flatten(1).sum(1)
        assert (total <= 5 * per_step * (1 + 1e-5)).all() and (total > 0.5 * per_step).all()
        one = dra(model, eps=eps, steps=1, budget=budget, clamp="none", p=1)
        assert torch.allclose((one(x, y) - x).abs().flatten(1).sum(1), torch.full((len(x),), 5 * per_step), rtol=1e-5)
    # the batch-scope slip normalises over the whole batch
    attack = dra(model, norm_scope="batch")
    g = attack.gradient(x, y, None, None)
    assert attack.step(g, None).abs().sum() == pytest.approx(len(x) * n / 255 / 5, rel=1e-5)


class MeanLossDRA(DRA):
    """The same attack on the batch-mean loss ×7: the normalisation must cancel the scale."""
    def objective(self, logits, y, p_clean):
        return 7.0 * super().objective(logits, y, p_clean) / len(y)


def test_invariant_to_the_loss_reduction(model):
    x, y = batch()
    ours = dra(model)(x, y)
    other = MeanLossDRA(model)(x, y)
    assert torch.allclose(ours, other, atol=1e-6)


def test_zero_gradients_are_guarded():
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    torch.nn.init.zeros_(flat[1].weight)
    x, y = batch()
    for budget in ("per_pixel", "l1"):
        out = dra(flat, budget=budget)(x, y)
        assert torch.isfinite(out).all() and torch.equal(out, x)


def test_the_box_clamp_holds_and_can_be_switched_off(model):
    x, y = batch()
    x = (x > 0.5).float()                                    # every pixel on the box's boundary
    out = dra(model, eps="8/255")(x, y)
    assert out.min() >= 0 and out.max() <= 1 and not torch.equal(out, x)
    free = dra(model, eps="8/255", clamp="none")(x, y)
    assert free.min() < 0 or free.max() > 1                  # the literal "unbounded" reading


def test_deterministic_and_options_run(model):
    x, y = batch()
    assert torch.equal(dra(model)(x, y), dra(model)(x, y))
    a = dra(model, random_start="normal", loss="kl")(x, y, torch.Generator().manual_seed(3))
    b = dra(model, random_start="normal", loss="kl")(x, y, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, x)
    for opts in ({"score": "grad_final"}, {"score": "grad_clean"}, {"score": "delta"}, {"rank": "signed"},
                 {"mask": "every_step"}, {"std": [0.2023, 0.1994, 0.2010]}, {"rank_scope": "channel"}):
        out = dra(model, **opts)(x, y)
        assert out.shape == x.shape and torch.isfinite(out).all() and not torch.equal(out, x), opts
    assert model.training is False


def test_dra_lowers_accuracy_and_reports_success_rate(trained):
    from bench.data.loader import DeviceLoader
    from bench.data.store import Split

    model, x, y = trained
    loader = DeviceLoader(Split((x[:64] * 255).round().to(torch.uint8), y[:64]), 32, torch.device("cpu"))
    res = dra(model, eps="8/255", p="1/3").evaluate(loader)
    assert res["robust"] < res["clean"] - 10
    assert res["success_rate"] == pytest.approx(100 * (res["clean"] - res["robust"]) / res["clean"])


@pytest.mark.parametrize("params,message", [
    ({"eps": 2}, "at most 1"),                               # 2 meaning 2/255 under the per-pixel reading
    ({"loss": "kl"}, "random_start 'normal'"),
    ({"p": 1.5}, "in \\[0, 1\\]"),
    ({"budget": "l2"}, "budget must be one of"),
    ({"step_size": "1/255"}, "no parameter"),
])
def test_bad_parameters_are_one_clear_error(params, message):
    with pytest.raises(SpecError, match=message):
        DRA.check_params(params)


def test_success_curve_measure_shares_one_trajectory(trained):
    """dra_success re-masks one trajectory per batch: each p equals a DRA protocol of its own."""
    from bench.data.loader import DeviceLoader
    from bench.data.store import Split
    from bench.measures import MEASURES

    model, x, y = trained
    loader = DeviceLoader(Split((x[:48] * 255).round().to(torch.uint8), y[:48]), 16, torch.device("cpu"))
    res = MEASURES.get("dra_success")(model, attack={"name": "dra", "eps": "2/255", "steps": 3},
                                      p=["0", "1/6", "1/3", "1"]).evaluate(loader)
    assert res["shared_trajectory"] and res["k"] == {"p0": 0, "p1_6": 512, "p1_3": 1024, "p1": 3072}
    assert res["success_rate"]["p0"] == 0.0
    for key, p in (("p1_6", "1/6"), ("p1_3", "1/3"), ("p1", 1)):
        alone = dra(model, eps="2/255", steps=3, p=p).evaluate(loader)
        assert res["success_rate"][key] == pytest.approx(alone["success_rate"]) and res["clean"] == alone["clean"]
    rates = [res["success_rate"][k] for k in ("p0", "p1_6", "p1_3", "p1")]
    assert rates == sorted(rates) and rates[-1] > 0


def loader_of(x, y, bs=32):
    from bench.data.loader import DeviceLoader
    from bench.data.store import Split

    return DeviceLoader(Split((x * 255).round().to(torch.uint8), y), bs, torch.device("cpu"))


class MeanPixel(torch.nn.Module):
    """Class 0 iff the mean pixel exceeds 128/255: an ℓ∞ attack of radius ε lowers the margin z
    by exactly ε, so robust accuracy at ε is the share of examples with z > ε (a known answer)."""
    def __init__(self):
        super().__init__()
        self.zero = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        z = x.flatten(1).mean(1) - 128 / 255 + self.zero
        return torch.stack([z, -z], 1)


def test_matched_strength_finds_the_eps_of_a_known_attack():
    """Known answer: matching PGD-5 (α = ε/5) against PGD-5 at 4/255 itself recovers 4/255, on a
    model whose robust accuracy falls by one example every 1/8 of 1/255."""
    from bench.measures import MEASURES

    x = torch.full((64, 3, 8, 8), 128 / 255)
    for i in range(64):                          # z_i = (i + 1) / (8 · 255): 8/255 added to 3(i + 1) of 192 pixels
        x[i].view(-1)[: 3 * (i + 1)] += 8 / 255
    y = torch.zeros(64, dtype=torch.long)
    pgd = {"name": "pgd", "norm": "linf", "steps": 5, "random_start": "uniform"}
    res = MEASURES.get("matched_strength")(
        MeanPixel().eval(), attacks={"ref": {**pgd, "eps": "4/255", "step_size": "0.8/255"},
                                     "dra": {"name": "dra", "eps": "1/255"}},
        match={"reference": "ref", "family": pgd, "iterations": 10}).evaluate(loader_of(x, y))
    # from a uniform start five steps of ε/5 lower the mean pixel by 3ε/4 (a start above 0 ends above −ε):
    # at 4/255 the examples with z ≤ 3/255 fall, 24 of 64
    assert res["clean"] == 100 and abs(res["reference_robust"] - 100 * 40 / 64) <= 100 / 64 + 1e-9
    assert abs(res["matched_robust"] - res["reference_robust"]) <= 100 / 64 + 1e-9   # within one image
    assert 3.8 <= res["matched_eps_255"] <= 4.2 and set(res["robust"]) == {"ref", "dra"}
    with pytest.raises(SpecError, match="match needs reference"):
        MEASURES.get("matched_strength").check_params({"attacks": {"a": pgd}, "match": {"reference": "b", "family": pgd}})


def test_perturbation_and_corruption_samples_measures(trained):
    from bench.measures import MEASURES

    model, x, y = trained
    attacks = {"pgd": {"name": "pgd", "eps": "2.55/255", "step_size": "0.51/255", "steps": 5},
               "dra": {"name": "dra", "eps": "1/255", "p": "1/3", "steps": 5}}
    res = MEASURES.get("perturbation")(model, attacks=attacks, index=3).evaluate(loader_of(x[:40], y[:40], 16))
    assert res["dra"]["l0"] <= 100 / 3 + 1e-6 < res["pgd"]["l0"]          # DRA keeps a third of the values
    assert res["dra"]["l1"] < res["pgd"]["l1"] and res["pgd"]["linf"] <= 2.55 + 1e-4
    assert res["image"]["index"] == 3 and len(res["image"]["dra"]["delta"]) == 3
    assert -1 <= res["pgd"]["saliency"] <= 1 and res["dra"]["saliency"] > res["pgd"]["saliency"]
    grid = MEASURES.get("corruption_samples")(model, source="synthetic", severities=[1, 5]).evaluate(loader_of(x[:8], y[:8]))
    assert set(grid["images"]) == {"snow", "frost", "zoom_blur", "motion_blur", "jpeg_compression", "gaussian_noise"}
    assert set(grid["images"]["snow"]) == {"1", "5"} and grid["n"] == 12 and 0 <= grid["correct"] <= 100


# ---- the fine-tuning method -------------------------------------------------------------------

class Recorder:
    """An updater that takes real SGD steps and records the terms of each."""
    def __init__(self, model):
        self.opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: 1.0)
        self.inner = Updater(self.opt, sched, {}, contextlib.nullcontext, 2)
        self.terms = []

    def __call__(self, terms, x, y):
        self.terms.append(sorted(terms))
        return self.inner(terms, x, y)


def make_ft(model, **params):
    return METHODS.get("dra_ft")(model, {"name": "dra", "eps": "2/255", "steps": 2}, **params)


def test_alternate_steps_takes_a_clean_step_then_attacks_the_updated_model():
    torch.manual_seed(0)
    model = tiny_model()
    method = make_ft(model)
    assert method.updates_per_batch == 2 and method.attack_config["name"] == "dra"
    seen = []
    real = method.attack
    method.attack = lambda x, y, g=None: (seen.append([p.detach().clone() for p in model.parameters()]), real(x, y, g))[1]
    before = [p.detach().clone() for p in model.parameters()]
    rec = Recorder(model)
    stats = method.train_step(*batch(8), torch.Generator().manual_seed(0), rec)
    assert rec.terms == [["clean"], ["adversarial"]] and rec.inner.index == 2
    assert any(not torch.equal(a, b) for a, b in zip(seen[0], before))      # DRA saw the updated weights
    assert set(stats) == {"loss", "clean_loss", "adv_loss", "clean_acc", "adv_acc"}


def test_replay_alternatives_and_the_clean_tail():
    torch.manual_seed(0)
    for replay, expected in (("alternate_batches", [["clean"], ["adversarial"], ["clean"]]),
                             ("joint", [["adversarial", "clean"]] * 3)):
        model = tiny_model()
        method = make_ft(model, replay=replay)
        assert method.updates_per_batch == 1
        rec = Recorder(model)
        method.begin_epoch(0, {})
        for i in range(3):
            method.train_step(*batch(8, seed=i), None, rec)
        assert rec.terms == expected, replay
    model = tiny_model()
    method = make_ft(model)
    method.begin_epoch(50, {"method.adversarial": False, "attack.eps": 0.5 / 255})
    method.attack = lambda *a, **k: pytest.fail("no attack in the clean tail")
    rec = Recorder(model)
    method.train_step(*batch(8), None, rec)
    assert rec.terms == [["clean"]]
    with pytest.raises(SpecError, match="replay must be one of"):
        make_ft(tiny_model(), replay="mixed")


def test_recipes_naming_dra_get_none_of_the_pgd_defaults():
    for name in ("pgd_at", "trades"):
        cfg = METHODS.get(name).training_attack({"name": "dra", "eps": "1/255", "steps": 5, "p": "1/3"})
        assert cfg == {"name": "dra", "eps": "1/255", "steps": 5, "p": "1/3"}
    assert METHODS.get("trades").training_attack({"name": "pgd", "eps": "2.55/255"})["loss"] == "kl"
    assert METHODS.get("dra_ft").training_attack({"name": "pgd", "eps": "2.55/255"}) == {"name": "pgd", "eps": "2.55/255"}


def test_training_loop_counts_two_updates_per_batch_and_the_clean_tail(tmp_path):
    from test_training import CONFIG

    SMALL = {**CONFIG, "epochs": 2, "data": {"source": "synthetic", "synthetic_size": [128, 64]}, "batch_size": 32,
             "selection": {"metric": "clean", "every": 1, "last": 0, "n_test": 32}}
    cfg = {**SMALL, "epochs": 3, "method": {"name": "dra_ft"}, "attack": {"name": "dra", "eps": "2/255", "steps": 2},
           "epoch_schedules": {"attack.eps": {"ramp": ["2/255", "0.5/255"], "epochs": [0, 2]},
                               "method.adversarial": {"milestones": [2], "values": [True, False]}}}
    train("ft", cfg, tmp_path, progress=False)
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["scheduler"]["last_epoch"] == 4 * (2 + 2 + 1)            # 4 batches: 2, 2, then 1 update each
    m = read_json(tmp_path / "metrics.json")
    assert [r["method.adversarial"] for r in m] == [True, True, False]
    assert [round(r["attack.eps"] * 255, 6) for r in m] == [2.0, 0.5, 0.5]
    assert "adv_acc" in m[1] and "adv_acc" not in m[2]


def test_the_eps_schedule_and_clean_tail_at_each_budget():
    """Table III's Ours: ε 2 → 0.5 (/255) over epochs 1–50, clean 51–60; rescaled at mini (4
    epochs: 2, 1.25, 0.5, then a clean epoch) and smoke (2 epochs: 2, 0.5); MNIST constant 0.1."""
    expect = {"paper": (60, None), "mini": (4, [2.0, 1.25, 0.5, 0.5]), "smoke": (2, [2.0, 0.5])}
    for scale, (epochs, eps) in expect.items():
        plan = Plan(scale, papers=["dra"])
        t3 = plan.table("tables/" + ("" if scale == "paper" else scale + "/") + "dra_table3")
        run = next(plan.run(r) for c in t3.cells if c.row == "ours" for r in c.runs)
        cfg = run.config
        assert cfg["epochs"] == epochs and cfg["init"].startswith("cifar10-standard-resnet50")
        vals = [schedules.values(cfg["epoch_schedules"], e) for e in range(epochs)]
        got = [round(v["attack.eps"] * 255, 6) for v in vals]
        adversarial = [v["method.adversarial"] for v in vals]
        if scale == "paper":
            assert got[0] == 2.0 and got[49] == 0.5 and got[1] == pytest.approx(2 - 1.5 / 49, abs=1e-6)
            assert adversarial == [True] * 50 + [False] * 10
        else:
            assert got == pytest.approx(eps) and adversarial == ([True] * 3 + [False] if scale == "mini" else [True, True])
        mnist = next(plan.run(r) for c in plan.table(t3.stem.replace("table3", "table2")).cells
                     if c.row == "ours" for r in c.runs).config
        assert "epoch_schedules" not in mnist and mnist["attack"]["eps"] == 0.1 and mnist["attack"]["p"] == "2/3"


# ---- models ------------------------------------------------------------------------------------

def test_models_have_their_sizes_and_mini_keeps_depths_apart():
    count = lambda m, c=3: sum(p.numel() for p in build_model(m, 10, c).parameters())
    assert count("resnet50") == 23_520_842 and count("resnet101") == 42_512_970     # kuangliu's ResNet50/101
    assert count("resnet34") == 21_282_122
    assert count("trades_example_net", 1) == 431_080 and count("trades_net_mnist", 1) == 21_840
    out = build_model("resnet50", 10).eval()(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10)
    plan = Plan("mini", papers=["dra"])
    models = {r.id.split("-")[2]: r.config["model"] for r in plan.runs.values() if r.config["method"]["name"] == "standard"}
    assert models["resnet18"]["blocks"] != models["resnet34"]["blocks"]
    assert models["resnet50"]["blocks"] != models["resnet101"]["blocks"]
    assert models["resnet50"]["block"] == "bottleneck" and models["resnet18"].get("block", "basic") == "basic"


# ---- the plan ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paper_plan():
    return Plan("paper", papers=["dra"])


def runs_of(plan, stem, row=None, setting=None):
    t = plan.table(stem)
    return {(c.row, c.setting): c.runs[0] for c in t.cells if c.runs and (row is None or c.row == row)
            and (setting is None or c.setting == setting)}


def test_one_vanilla_run_per_backbone_serves_every_target(paper_plan):
    standard = [r for r in paper_plan.runs.values() if r.config["method"]["name"] == "standard"]
    assert sorted(r.id.split("-")[2] for r in standard) == ["resnet101", "resnet18", "resnet34", "resnet50",
                                                            "trades_example_net"]
    v50 = next(r.id for r in standard if "resnet50" in r.id)
    for stem, row in (("tables/dra_table3", "vanilla"), ("tables/dra_table4", "vanilla"), ("tables/dra_table6", "p0"),
                      ("tables/dra_table7", "vanilla"), ("tables/dra_calibration", "vanilla"),
                      ("figures/dra_fig3", "vanilla"), ("figures/dra_fig4", "vanilla"), ("figures/dra_fig5", "vanilla")):
        assert v50 in runs_of(paper_plan, stem, row).values(), stem
    for run in paper_plan.runs.values():          # every fine-tuned run starts from its backbone's vanilla run
        if run.config["method"]["name"] == "dra_ft":
            assert paper_plan.run(run.requires["init"]).config["method"]["name"] == "standard"
            assert run.requires["init"].split("-")[2] == run.id.split("-")[2]
    assert all("eps" not in r.config["attack"] for r in standard)


def test_shared_rows_between_tables(paper_plan):
    t3 = runs_of(paper_plan, "tables/dra_table3")
    t4 = runs_of(paper_plan, "tables/dra_table4", setting="r50")
    assert t4[("vanilla", "r50")] == t3[("vanilla", "r50")] and t4[("ours", "r50")] == t3[("ours", "r50")]
    t5, t6 = runs_of(paper_plan, "tables/dra_table5"), runs_of(paper_plan, "tables/dra_table6")
    assert t6[("p_1_3", "r50")] == t5[("ours_dra", "r50")] and t6[("p0", "r50")] == t3[("vanilla", "r50")]
    t7 = runs_of(paper_plan, "tables/dra_table7")
    assert t7[("dra", "r50")] == t3[("ours", "r50")]
    t2, units = runs_of(paper_plan, "tables/dra_table2"), runs_of(paper_plan, "tables/dra_units")
    assert units[("vanilla", "mnist")] == t2[("vanilla", "mnist")] and units[("ours", "mnist")] == t2[("ours", "mnist")]
    assert paper_plan.run(units[("ours_l1", "mnist")]).config["attack"]["budget"] == "l1"
    assert len(paper_plan.runs) == 25          # the inventory's 24 runs + the literal-ℓ1 diagnostic
    fig4 = paper_plan.table("figures/dra_fig4")
    assert len(fig4.eval_keys()) == 6          # one success-curve evaluation per backbone and ε


def test_paper_settings_of_the_runs_and_evaluations(paper_plan):
    t5 = runs_of(paper_plan, "tables/dra_table5")
    for row in ("madry_dra", "trades_dra"):
        cfg = paper_plan.run(t5[(row, "r50")]).config
        assert cfg["attack"] == {"name": "dra", "eps": "1/255", "p": "1/3", "steps": 5} and cfg["epochs"] == 76
    for row in ("madry_pgd", "trades_pgd", "ours_pgd"):
        a = paper_plan.run(t5[(row, "r50")]).config["attack"]
        assert (a["name"], a["eps"], a["step_size"], a["steps"]) == ("pgd", "2.55/255", "0.51/255", 5)
    for key in paper_plan.tables["tables/dra_table3"].eval_keys():
        a = paper_plan.evals[key].protocol["attack"]
        assert a["steps"] == 20 and a["random_start"] == "uniform" and paper_plan.evals[key].protocol["n_test"] is None
        assert a["step_size"] in {"0.1/255", "0.25/255", "0.4/255"}
    c = paper_plan.tables["tables/dra_table7"].cells[0]
    assert "cifar10c" in c.data


# ---- the published numbers -----------------------------------------------------------------------
# (table, setting, row) → the paper's printed cells in its column order, copied by hand from dra.md
PRINTED = {
    ("table1", "mnist", "vanilla"): "99.3% 0.3%", ("table1", "mnist", "madry"): "99.2% 95.6%",
    ("table1", "mnist", "trades_1"): "99.3% 94.1%", ("table1", "mnist", "trades_6"): "99.3% 96.0%",
    ("table1", "mnist", "mart"): "99.1% 96.2%",
    ("table1", "cifar10", "vanilla"): "93.0% 0.0%", ("table1", "cifar10", "madry"): "87.3% 47.0%",
    ("table1", "cifar10", "trades_1"): "86.6% 44.3%", ("table1", "cifar10", "trades_6"): "81.2% 53.5%",
    ("table1", "cifar10", "mart"): "83.4% 52.8%",
    ("table2", "mnist", "vanilla"): "99.3% 88.3% 18.6%", ("table2", "mnist", "trades_1"): "99.3% 98.4% 93.5%",
    ("table2", "mnist", "trades_05"): "99.3% 97.9% 92.1%", ("table2", "mnist", "trades_01"): "99.4% 97.2% 90.8%",
    ("table2", "mnist", "ours"): "99.3% 98.0% 95.9%",
    ("table3", "r50", "vanilla"): "93.7% 45.0% 15.9% 5.6%", ("table3", "r50", "trades_005"): "91.4% 53.5% 25.8% 8.6%",
    ("table3", "r50", "trades_001"): "92.6% 49.4% 19.2% 6.3%", ("table3", "r50", "ours"): "93.8% 64.9% 31.0% 10.9%",
    ("table4", "r18", "vanilla"): "93.1% 44.1% 14.6% 5.8%", ("table4", "r18", "ours"): "92.4% 60.4% 25.5% 8.5%",
    ("table4", "r34", "vanilla"): "93.3% 46.6% 15.3% 4.5%", ("table4", "r34", "ours"): "92.9% 61.4% 27.9% 8.9%",
    ("table4", "r50", "vanilla"): "93.7% 45.0% 15.9% 5.6%", ("table4", "r50", "ours"): "93.8% 64.9% 31.0% +10.9%",
    ("table4", "r101", "vanilla"): "93.7% 46.9% 15.9% 6.8%", ("table4", "r101", "ours"): "93.8% 69.8% 32.3% +14.2%",
    ("table5", "r50", "madry_pgd"): "88.8% 66.1% 30.9% 11.0%", ("table5", "r50", "madry_dra"): "89.4% 66.7% 31.6% 12.5%",
    ("table5", "r50", "trades_pgd"): "87.9% 65.0% 34.3% 12.1%", ("table5", "r50", "trades_dra"): "87.2% 68.3% 39.1% 13.9%",
    ("table5", "r50", "ours_pgd"): "90.6% 59.2% 27.0% 10.1%", ("table5", "r50", "ours_dra"): "91.3% 60.0% 28.9% 9.8%",
    ("table6", "r50", "p0"): "93.7% 45.0% 15.9% 5.6%", ("table6", "r50", "p_1_6"): "91.8% 58.5% 28.0% 9.2%",
    ("table6", "r50", "p_1_3"): "91.3% 60.0% 28.9% 9.8%", ("table6", "r50", "p_1_2"): "90.4% 61.4% 29.1% 10.0%",
    ("table6", "r50", "p_1"): "89.6% 61.9% 29.3% 10.1%",
    # Table VII is printed transposed (a row per corruption): columns are the models there
    ("table7", "r50", "dra"): "85.37% 84.4% 84.97% 76.89% 89.51% 75.85%",
    ("table7", "r50", "vanilla"): "84.10% 81.41% 82.13% 74.08% 84.51% 50.92%",
}
TABLE7_LINES = ["Snow 85.37% 84.10%", "Frost 84.4% 81.41%", "Zoom_blur 84.97% 82.13%", "Motion_blur 76.89% 74.08%",
                "JPEG compression 89.51% 84.51%", "Gaussian noise 75.85% 50.92%"]


def numbers(line):
    return [float(t.strip("%+")) for t in line.split()]


@pytest.mark.skipif(not PAPER.exists(), reason="../shared/papers/dra.md not present")
def test_hand_copied_lines_are_in_the_paper():
    text = re.sub(r"\s+", " ", PAPER.read_text())
    for key, line in PRINTED.items():
        if key[0] != "table7":
            assert line in text, (key, line)
    for line in TABLE7_LINES:
        assert line in text, line
    assert "resulted in a robust accuracy of 44.5%" in text and "\\epsilon = 2.55" in text   # the calibration target


def test_every_published_number_of_tables_1_to_7_is_in_bench_published_csv():
    out = subprocess.run([sys.executable, "-m", "bench", "published", "--csv"], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    rows = [r for r in csv.DictReader(io.StringIO(out)) if r["paper"] == "dra" and re.fullmatch(r"table\d", r["table"])]
    got: dict = {}
    for r in rows:
        got.setdefault((r["table"], r["setting"], r["row"]), []).append(float(r["value"]))
    assert got == {k: numbers(v) for k, v in PRINTED.items()}
    counts = {t: sum(r["table"] == t for r in rows) for t in sorted({r["table"] for r in rows})}
    assert counts == {"table1": 20, "table2": 15, "table3": 16, "table4": 32, "table5": 24, "table6": 20, "table7": 12}
    assert all(r["cited"] for r in rows if r["table"] == "table1") and not any(r["cited"] for r in rows
                                                                               if r["table"] != "table1")
    calib = [r for r in csv.DictReader(io.StringIO(out)) if r["paper"] == "dra" and r["table"] == "calibration"]
    assert sorted(float(r["value"]) for r in calib) == [2.55, 44.5, 44.5]


def test_the_papers_own_identities_and_contradictions():
    """Published-number consistency (the inventory's checks): Table IV's R50 rows are Table III,
    Table VI's p = 0 is the vanilla model and p = 1/3 is Table V's ours + DRA, but Tables V/VI's
    ours + DRA is not Table III's Ours; Table I's vanilla rows are not the paper's own."""
    pub = {(t, s, r, c): v for t, s, r, c, v, _ in published_cells(load_spec("dra"))}
    row = lambda t, s, r, cols: [pub[(t, s, r, c)] for c in cols]
    cols = ["natural", "e2", "e5", "e8"]
    assert row("table4", "r50", "vanilla", cols) == row("table3", "r50", "vanilla", cols) == row("table6", "r50", "p0", cols)
    assert row("table4", "r50", "ours", cols) == row("table3", "r50", "ours", cols)
    assert row("table6", "r50", "p_1_3", cols) == row("table5", "r50", "ours_dra", ["clean", "e2", "e5", "e8"])
    assert row("table5", "r50", "ours_dra", ["clean", "e2"]) != row("table3", "r50", "ours", ["natural", "e2"])
    assert pub[("table1", "cifar10", "vanilla", "a_rob")] != pub[("table3", "r50", "vanilla", "e8")]
    assert round(pub[("table4", "r101", "ours", "e5")] - pub[("table4", "r101", "vanilla", "e5")], 1) == 16.4  # printed +16.3
    spec = load_spec("dra")
    contradicted = {c["id"] for t in spec["tables"].values() for c in t.get("claims", []) if c.get("paper_contradicts")}
    assert contradicted == {"t2_ours_2to5_e01", "t4_gain_grows_e2", "t5_dra_beats_pgd_all", "t6_half_to_one_strict"}


# ---- one smoke build through Snakemake ------------------------------------------------------------

def test_smoke_table2_builds_through_snakemake(tmp_path):
    from test_workflow import snakemake

    env = {"BENCH_RESULTS": str(tmp_path / "results"), "BENCH_CACHE": str(tmp_path / "cache")}
    snakemake(tmp_path, "--cores", "1", "tables/smoke/dra_table2.md", env=env)
    md = (tmp_path / "tables/smoke/dra_table2.md").read_text()
    comparison = md.split("## Cell by cell")[1].split("## Claims")[0]
    for value in ("99.30", "88.30", "18.60", "95.90", "90.80"):
        assert f"| {value} |" in comparison
    assert "not run" not in comparison and "budget per_pixel" in md and "fails" in md.split("## Claims")[1]
    ft = next((tmp_path / "results/smoke/runs").glob("mnist-dra_ft-*"))
    cfg = read_json(ft / "config.json")
    assert cfg["method"]["attack"]["name"] == "dra" and cfg["method"]["attack"]["budget"] == "per_pixel"
    assert read_json(ft / "run.json")["config"]["init"].startswith("mnist-standard-trades_example_net")
