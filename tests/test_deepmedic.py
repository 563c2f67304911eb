"""DeepMedic: the paper's sizes, residual connections, cascade, and dense = patch-wise."""

import pytest
import torch

from lesionseg.models.deepmedic import CascadedDeepMedic, DeepMedic

torch.manual_seed(0)


def test_sizes_and_receptive_fields_match_the_paper():
    model = DeepMedic(4, 5)
    assert model.normal.shrink + 1 == 17 and model.receptive_field == 51
    assert model.segment_output_size(25) == 9 and model.segment_output_size(45) == 29
    assert model.margin == 26 and model.input_size(9) == 61
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 4, 61, 61, 61)).shape == (1, 5, 9, 9, 9)
        assert model(torch.zeros(1, 4, 81, 81, 81)).shape == (1, 5, 29, 29, 29)
        assert model(torch.zeros(1, 4, 61, 62, 65)).shape == (1, 5, 9, 10, 13)  # any box, not only cubes
    with pytest.raises(ValueError, match="not larger than twice the margin"):
        model(torch.zeros(1, 4, 52, 52, 52))


def test_paper_layers_and_two_low_resolution_pathways():
    model = DeepMedic(4, 5, subsample_factors=(3, 5), residual_layers=(4, 6, 8), fc_maps=(250, 250))
    assert [layer.conv.out_channels for layer in model.normal.layers] == [30, 30, 40, 40, 40, 40, 50, 50]
    assert model.receptive_field == 85 and model.grid == 15
    assert model.fully_connected[3].out_channels == 250
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 4, model.input_size(5), model.input_size(5), model.input_size(5))).shape[2:] == (5,) * 3
    with pytest.raises(ValueError, match="odd factors"):
        DeepMedic(4, 5, subsample_factors=(2,))


def test_he_initialisation():
    model = DeepMedic(4, 5)
    weight = model.normal.layers[3].conv.weight
    fan_in = weight[0].numel()
    assert weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)


def test_residual_connection_adds_the_earlier_layer():
    plain = DeepMedic(2, 2, maps=(4, 4, 6, 6), subsample_factors=(3,))
    residual = DeepMedic(2, 2, maps=(4, 4, 6, 6), subsample_factors=(3,), residual_layers=(4,))
    residual.load_state_dict(plain.state_dict())
    plain.eval()
    residual.eval()
    x = torch.randn(1, 2, 31, 31, 31)
    with torch.no_grad():
        assert not torch.allclose(plain.normal(x), residual.normal(x))
    with pytest.raises(ValueError, match="layers are numbered"):
        DeepMedic(2, 2, residual_layers=(1,))


def dense_matches_blocks(model, volume: torch.Tensor, n_checks: int = 6) -> float:
    """Largest difference between a dense pass and per-block passes at random voxels."""
    model.eval()
    m, grid = model.margin, model.grid
    padded = torch.nn.functional.pad(volume, (m,) * 6)
    with torch.no_grad():
        dense = torch.softmax(model(padded), dim=1)
        worst = 0.0
        generator = torch.Generator().manual_seed(1)
        for _ in range(n_checks):
            voxel = [int(torch.randint(0, s, (1,), generator=generator)) for s in volume.shape[2:]]
            start = [v - v % grid for v in voxel]  # the coarse block holding the voxel
            patch = padded[(slice(None), slice(None), *(slice(s, s + grid + 2 * m) for s in start))]
            own = torch.softmax(model(patch), dim=1)[(0, slice(None), *(v - s for v, s in zip(voxel, start)))]
            worst = max(worst, (own - dense[(0, slice(None), *voxel)]).abs().max().item())
    return worst


def test_dense_inference_equals_patchwise():
    model = DeepMedic(3, 4, maps=(8, 8, 8, 8, 8, 8, 8, 8), fc_maps=(16, 16))
    assert dense_matches_blocks(model, torch.randn(1, 3, 20, 17, 14)) < 1e-4


def test_cascade_freezes_the_first_network():
    first = DeepMedic(2, 3, maps=(4,) * 8, fc_maps=(8, 8))
    cascade = CascadedDeepMedic(first, DeepMedic(5, 3, maps=(4,) * 8, fc_maps=(8, 8)))
    assert cascade.margin == 52 and cascade.output_size(cascade.input_size(3)) == 3
    before = {k: v.clone() for k, v in cascade.first.state_dict().items()}
    second_before = cascade.second.classifier.weight.clone()
    cascade.train()
    assert not cascade.first.training
    optimiser = torch.optim.SGD([p for p in cascade.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(2, 2, cascade.input_size(3), cascade.input_size(3), cascade.input_size(3))
    cascade(x).square().mean().backward()
    optimiser.step()
    assert all(torch.equal(before[k], v) for k, v in cascade.first.state_dict().items())
    assert not torch.equal(second_before, cascade.second.classifier.weight)
    with pytest.raises(ValueError, match="input channels"):
        CascadedDeepMedic(first, DeepMedic(2, 3))


def trained_looking(model):
    """``model`` in eval mode with batch-norm statistics, scales and PReLU slopes away from their initial values
    (so that folding them is tested, not skipped over identities)."""
    generator = torch.Generator().manual_seed(2)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            for tensor, low, high in ((module.running_mean, -1, 1), (module.running_var, 0.5, 2),
                                      (module.weight.data, 0.5, 1.5), (module.bias.data, -0.5, 0.5)):
                tensor.copy_(torch.empty(tensor.shape).uniform_(low, high, generator=generator))
        if isinstance(module, torch.nn.PReLU):
            module.weight.data.copy_(torch.empty(module.weight.shape).uniform_(-0.5, 0.8, generator=generator))
    return model.eval()


@pytest.mark.parametrize("name", ["deepmedic", "deepmedic-residual", "cascaded-deepmedic"])
def test_inference_copy_equals_the_network_in_eval_mode(name):
    from lesionseg.inference.deepmedic_inference import inference_network
    from lesionseg.models import build_model

    small = {"maps": [6, 6, 8, 8, 8, 8, 10, 10], "fc_maps": [12, 12]}
    model = trained_looking(build_model(name, 4, 5, small))
    state = {key: value.clone() for key, value in model.state_dict().items()}
    copy = inference_network(model)
    assert copy.margin == model.margin and copy.grid == model.grid and copy.n_classes == model.n_classes
    # On the grid (as dense tiles), off it, and not cubic.
    for output in [(model.grid,) * 3, (7, 5, 4)]:
        x = torch.randn(2, 4, *(model.input_size(o) for o in output))
        with torch.no_grad():
            expected, got = model(x), copy(x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())
    # The trained module is left as it was: same keys, same values.
    after = model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], v) for k, v in state.items())


def test_inference_copy_keeps_residual_sums_and_skips_unfolded():
    from lesionseg.inference.deepmedic_inference import inference_network

    model = trained_looking(DeepMedic(3, 2, maps=(4, 4, 6, 6, 6, 6, 8, 8), fc_maps=(8, 8),
                                      residual_layers=(2, 4, 6, 8)))
    copy = inference_network(model)
    # Residual sums (2, 4, 6, 8) and skip sources (0 = the image, 2, 4, 6) keep their batch norm apart.
    assert [layer.scale is not None for layer in copy.normal.layers] == [False, True, False, True, False, True,
                                                                          False, True]
    x = torch.randn(1, 3, *(model.input_size(3),) * 3)
    with torch.no_grad():
        assert torch.allclose(copy(x), model(x), atol=1e-5)
