"""The architecture registry builds every network with the papers' defaults."""

import inspect

import pytest
import torch

from lesionseg.architectures import HYPERPARAMETERS, architecture_parameters
from lesionseg.models import ARCHITECTURES, BUILDERS, CASCADES, DeepMedic, build_model, paper_parameter_count


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_builds_and_runs(name):
    model = build_model(name, 4, 5).eval()
    size = model.input_size(1)
    shape = (1, 4, *([size] * model.dims))
    with torch.no_grad():
        out = model(torch.zeros(shape))
    assert out.shape == (1, 5, *([1] * model.dims))
    assert model.output_layer.out_channels == 5
    assert (name in CASCADES) == hasattr(model, "first")


def test_havaei_defaults_reproduce_the_paper_counts():
    counts = {n: paper_parameter_count(build_model(n, 4, 5)) for n in
              ("twopathcnn", "inputcascadecnn", "localcascadecnn", "mfcascadecnn")}
    assert counts == {"twopathcnn": 651_488, "inputcascadecnn": 802_368, "localcascadecnn": 654_368,
                      "mfcascadecnn": 662_513}


def test_overrides_and_their_errors():
    model = build_model("deepmedic", 2, 3, {"fc_maps": [20, 20], "subsample_factors": [3, 5]})
    assert model.receptive_field == 85 and model.classifier.in_channels == 20
    with pytest.raises(ValueError, match=r"no hyper-parameter\(s\) \['feature_maps'\]"):
        build_model("deepmedic", 2, 3, {"feature_maps": [1]})
    with pytest.raises(ValueError, match="unknown architecture 'unet'"):
        build_model("unet", 2, 3)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_declared_hyperparameters_are_the_builders_keywords(name):
    # lesionseg.architectures declares them without torch (the Snakefile checks the config with it)
    build = ARCHITECTURES[name].build
    if name == "cascaded-deepmedic":  # its builder passes its keywords on to its two DeepMedics
        build = DeepMedic
    keywords = set(inspect.signature(build).parameters) - {"in_channels", "n_classes", "first"}
    assert set(HYPERPARAMETERS[name].names) == keywords
    assert set(HYPERPARAMETERS[name].defaults) <= keywords
    assert ARCHITECTURES[name].defaults is HYPERPARAMETERS[name].defaults


def test_every_declared_architecture_has_a_builder():
    assert list(BUILDERS) == list(HYPERPARAMETERS) == list(ARCHITECTURES)
    assert set(CASCADES) <= set(HYPERPARAMETERS)
    assert architecture_parameters("twopathcnn", {"maxout": 3}) == {"maxout": 3, "dropout": 0.2}
