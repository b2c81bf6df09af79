"""HAT's directional margin: analytical values on linear models, cap, batching, the
measure end to end, and consistency with the PGD perturbations that define it."""
from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import nn

from bench.measures.margin import adversarial_directions, directional_margin, search_schedule

from conftest import tiny_model

RES = 1e-3


def linear(w: torch.Tensor, b: torch.Tensor) -> nn.Module:
    model = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        model.weight.copy_(w)
        model.bias.copy_(b)
    return model


def analytical_margin(w, b, x, r):
    """Linear classifier: the class-c region is convex, so along the line the first change
    on either side is min over j ≠ c of a_j / |s_j|, a_j = (w_c − w_j)·x + b_c − b_j > 0,
    s_j = (w_c − w_j)·r̂ (parallel pairs, s_j = 0, never cross)."""
    r_hat = r / r.norm(dim=1, keepdim=True)
    logits = x @ w.T + b
    c = logits.argmax(1)
    a = logits.gather(1, c[:, None]) - logits                      # B × C, 0 at j = c
    s = (r_hat @ w.T).gather(1, c[:, None]) - r_hat @ w.T
    ratio = torch.where((s.abs() > 1e-12) & (a > 0), a / s.abs(), torch.full_like(a, math.inf))
    return ratio.min(1).values


def test_two_class_boundary_on_both_signs():
    # f(x) = (x1, 0): class 0 iff x1 > 0. From x = (0.3, 0), the boundary x1 = 0 is at
    # α = −0.3·√2 along r = (1, 1) (negative α) and +0.3·√2 along r = (−1, 1).
    model = linear(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.zeros(2))
    x = torch.tensor([[0.3, 0.0], [0.3, 0.0], [0.3, 5.0]])
    r = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-2.0, 0.0]])
    m = directional_margin(model, x, r, cap=10.0, resolution=RES)
    expected = torch.tensor([0.3 * math.sqrt(2), 0.3 * math.sqrt(2), 0.3])
    assert ((m - expected) >= 0).all() and ((m - expected) <= RES).all(), (m, expected)


def test_positive_side_only_as_hats_code_searches():
    # The same lines as above: along r = (1, 1) the boundary lies at negative α only, so a
    # search along +r̂ (HAT's code: +r̂, cap 35, precision 0.1) never finds it and the example
    # is capped at 35; along (−1, 1) it is at +0.3·√2 ≈ 0.4243, along (−2, 0) at +0.3.
    model = linear(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.zeros(2))
    x = torch.tensor([[0.3, 0.0], [0.3, 0.0], [0.3, 5.0]])
    r = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-2.0, 0.0]])
    m, capped = directional_margin(model, x, r, cap=35.0, resolution=0.1, sides="positive", return_capped=True)
    assert capped.tolist() == [True, False, False] and m[0].item() == 35.0
    for got, want in zip(m[1:].tolist(), [0.3 * math.sqrt(2), 0.3]):
        assert want <= got <= want + 0.1, (got, want)
    both = directional_margin(model, x, r, cap=35.0, resolution=0.1)   # the paper's ±r̂ (default)
    assert 0.3 * math.sqrt(2) <= both[0].item() <= 0.3 * math.sqrt(2) + 0.1
    with pytest.raises(ValueError, match="sides"):
        directional_margin(model, x, r, sides="negative")


def test_random_linear_models_match_analytical_margin():
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(5, 8, generator=g), torch.randn(5, generator=g)
    x, r = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g)
    expected = analytical_margin(w, b, x, r)
    assert expected.isfinite().all() and (expected < 20).all()
    m = directional_margin(linear(w, b), x, r, cap=20.0, resolution=RES, start=0.05)
    err = m - expected
    assert (err >= -1e-4).all() and (err <= RES + 1e-4).all(), err.abs().max()
    # the margin is symmetric in the direction's sign and invariant to its scale
    assert torch.allclose(directional_margin(linear(w, b), x, -3 * r, cap=20.0, resolution=RES,
                                             start=0.05), m, atol=RES)


def test_direction_parallel_to_boundary_is_capped():
    model = linear(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), torch.zeros(2))
    x = torch.tensor([[0.5, 0.0], [0.5, 0.0], [0.5, 0.0]])
    r = torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])       # parallel, zero, across
    m, capped = directional_margin(model, x, r, cap=7.0, resolution=RES, return_capped=True)
    assert capped.tolist() == [True, True, False]
    assert m[:2].tolist() == [7.0, 7.0]
    assert 0.5 <= m[2] <= 0.5 + RES
    # a boundary beyond the cap is not found either
    m, capped = directional_margin(model, x[2:] + torch.tensor([[9.0, 0.0]]), r[2:], cap=7.0,
                                   resolution=RES, return_capped=True)
    assert capped.item() and m.item() == 7.0


def test_schedule_reaches_cap_and_resolution():
    grid, n = search_schedule(100.0, 0.01, 0.01)
    assert grid[0] == 0.01 and grid[-1] == 100.0 and grid[-2] < 100.0
    widest = max(b - a for a, b in zip([0.0] + grid, grid))
    assert widest / 2 ** n <= 0.01 < widest / 2 ** (n - 1)
    with pytest.raises(ValueError):
        search_schedule(1.0, 0.01, 2.0)


def test_batch_agrees_with_single_examples():
    torch.manual_seed(0)
    model = tiny_model().eval()
    x = torch.rand(4, 3, 32, 32)
    r = torch.randn(4, 3, 32, 32)
    kw = dict(cap=30.0, resolution=0.01, start=0.05)
    batch = directional_margin(model, x, r, **kw)
    single = torch.cat([directional_margin(model, x[i:i + 1], r[i:i + 1], **kw) for i in range(4)])
    assert torch.allclose(batch, single, atol=1e-5), (batch, single)


def test_margin_along_own_pgd_directions_is_within_perturbation_norm():
    """Where PGD changed the prediction, the line through x along δ crosses a boundary at
    |α| ≤ ‖δ‖₂, so the margin must not exceed ‖δ‖₂ (+ resolution) — unless the search
    skipped a crossing. A small random ReLU network (labels = its own predictions, so every
    success of the attack is a prediction change) keeps this fast and nonlinear."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 10)).eval()
    x = torch.rand(64, 3, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)
    cfg = dict(name="pgd", eps="8/255", step_size="2/255", steps=10)
    delta = adversarial_directions(model, x, y, cfg, torch.Generator().manual_seed(0))
    assert delta.abs().max() <= 8 / 255 + 1e-6
    with torch.no_grad():
        fooled = model(x + delta).argmax(1) != y
    assert fooled.sum() >= 10, "PGD should change the prediction on several examples"
    norms = delta.flatten(1).norm(dim=1)
    res = 1e-3
    m, capped = directional_margin(model, x, delta, cap=50.0, resolution=res, return_capped=True)
    assert not capped[fooled].any()
    assert (m[fooled] <= norms[fooled] + res).all(), (m[fooled] - norms[fooled]).max()
    assert (m > 0).all()


def test_measure_end_to_end():
    from bench.data.loader import DeviceLoader
    from bench.data.store import Split
    from bench.evaluate import run_measure

    torch.manual_seed(0)
    model, helper = tiny_model(width=4), tiny_model(width=4)
    split = Split(torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (12,)))
    loader = DeviceLoader(split, 5, torch.device("cpu"))

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    cfg = {"name": "margin", "attack": {"name": "pgd", "steps": 2}, "cap": 40.0, "resolution": 0.05}
    result = run_measure(model, loader, cfg, {"directions": helper}, seed=0, progress=bar)
    assert result["n"] == 12 and len(result["margins"]) == 12 and bar.n == 3
    assert 0 < result["median"] <= 40.0 and 0 <= result["capped"] <= 12
    assert result["median"] == pytest.approx(statistics.median(result["margins"]))
    assert 0 <= result["clean"] <= 100 and result["cap"] == 40.0 and result["sides"] == "both"
    assert "bench.measures.margin" in result["implementation"]
    again = run_measure(model, loader, cfg, {"directions": helper}, seed=0)
    assert again["margins"] == result["margins"]


def test_measure_requires_the_directions_helper():
    from bench.errors import SpecError
    from bench.measures import MEASURES

    with pytest.raises(SpecError):
        MEASURES.get("margin")(tiny_model(width=4), helpers={})
