"""Models: every registered family builds for every dataset shape; paper sizes are right."""
from __future__ import annotations

import pytest
import torch

from bench.data import DATASETS
from bench.errors import SpecError
from bench.models import ALIASES, MODELS, build, expand

SMALL = {"resnet": {"width": 4, "blocks": [1, 1, 1, 1]}, "preact_resnet": {"width": 4, "blocks": [1, 1, 1, 1]},
         "wide_resnet": {"depth": 10, "widen": 1}, "mlp": {"hidden": 8}, "lenet": {}, "mnist_cnn": {}, "small_cnn": {"width": 4},
         "imagenet_resnet": {"layers": [1, 1, 1, 1], "width": 8},
         # a RobustBench zoo model is one fixed network: it builds for its own dataset's shape only
         "robustbench": {"id": "Standard", "dataset": "cifar10", "threat_model": "Linf"}}
VECTOR_MODELS = {"mlp"}


@pytest.mark.parametrize("family", MODELS.names())
@pytest.mark.parametrize("dataset", DATASETS.names())
def test_every_family_builds_for_every_dataset(family, dataset):
    info = DATASETS.get(dataset)
    if (len(info.shape) == 1) != (family in VECTOR_MODELS):
        pytest.skip("image models take images, vector models vectors")
    if family == "robustbench" and (info.num_classes, info.shape) != (10, (3, 32, 32)):
        with pytest.raises(SpecError, match="takes 3-channel images of 10 classes"):
            build({"name": family, **SMALL[family]}, info.num_classes, info.shape[0])
        return
    model = build({"name": family, **SMALL[family]}, info.num_classes, info.shape[0]).eval()
    out = model(torch.rand(2, *info.shape))
    assert out.shape == (2, info.num_classes)


def test_paper_models_have_their_published_sizes():
    count = lambda m: sum(p.numel() for p in build(m, 10).parameters())
    assert count("resnet18") == 11_173_962
    assert count("wrn28_10") == 36_479_194
    assert set(ALIASES) >= {"resnet18", "preact_resnet18", "wrn34_10"}


def test_unknown_model_is_a_clear_error():
    with pytest.raises(Exception, match="unknown model 'vgg'"):
        expand("vgg")


def test_normalisation_lives_inside_the_model():
    torch.manual_seed(0)
    a = build({"name": "resnet", **SMALL["resnet"]}, 10).eval()
    b = build({"name": "resnet", **SMALL["resnet"], "mean": [0.5] * 3, "std": [0.25] * 3}, 10).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(b(x), a((x - 0.5) / 0.25), atol=1e-6)
