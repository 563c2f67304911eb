"""Havaei et al. 2017 CNNs: paper parameter counts, sizes, dense == patch-wise, frozen cascades, init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lesionseg.models.havaei import (
    CascadeCNN,
    InputCascadeCNN,
    LocalCascadeCNN,
    Maxout,
    MFCascadeCNN,
    TwoPathCNN,
    paper_parameter_count,
)

MODELS = (TwoPathCNN, InputCascadeCNN, LocalCascadeCNN, MFCascadeCNN)
PAPER_COUNTS = {TwoPathCNN: 651_488, InputCascadeCNN: 802_368, LocalCascadeCNN: 654_368, MFCascadeCNN: 662_513}
RECEPTIVE_FIELDS = {TwoPathCNN: 33, InputCascadeCNN: 65, LocalCascadeCNN: 56, MFCascadeCNN: 53}
# Output side = input side - shrink: 100x90 -> 68x58, 36x26, 45x35, 48x38.
SHRINK = {TwoPathCNN: 32, InputCascadeCNN: 64, LocalCascadeCNN: 55, MFCascadeCNN: 52}


def randomise(model: nn.Module, seed: int = 0) -> None:
    """Fan-in scaled uniform weights and random biases, so logits and probabilities vary by O(1)
    (the paper's U(-0.005, 0.005) makes every output nearly equal)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in model.modules():
            if isinstance(conv, nn.Conv2d):
                bound = math.sqrt(3.0 / conv.weight[0].numel())
                conv.weight.copy_((torch.rand(conv.weight.shape, generator=generator) * 2 - 1) * bound)
                conv.bias.copy_((torch.rand(conv.bias.shape, generator=generator) * 2 - 1) * 0.5)


@pytest.mark.parametrize("model_class", MODELS)
def test_paper_parameter_counts(model_class):
    assert paper_parameter_count(model_class(4, 5)) == PAPER_COUNTS[model_class]


@pytest.mark.parametrize("model_class", MODELS)
def test_paper_count_ignores_maxout_group_size(model_class):
    paper, wider = model_class(4, 5, maxout=2), model_class(4, 5, maxout=4)
    assert paper_parameter_count(wider) == PAPER_COUNTS[model_class]
    assert sum(p.numel() for p in wider.parameters()) > sum(p.numel() for p in paper.parameters())


def test_paper_count_follows_channels_and_classes():
    # Local 7*7*2*64 + 3*3*64*64, global 13*13*2*160, output 21*21*224*3.
    assert paper_parameter_count(TwoPathCNN(2, 3)) == 6272 + 36864 + 54080 + 296352
    # The input cascade's second CNN takes 2 + 3 channels.
    assert paper_parameter_count(InputCascadeCNN(2, 3)) == 15680 + 36864 + 135200 + 296352


def test_maxout_takes_max_of_consecutive_channels():
    x = torch.tensor([1.0, 5.0, 3.0, 2.0, -1.0, -4.0]).reshape(1, 6, 1, 1)
    assert Maxout(2)(x).flatten().tolist() == [5.0, 3.0, -1.0]
    assert Maxout(3)(x).flatten().tolist() == [5.0, 2.0]


@pytest.mark.parametrize("model_class", MODELS)
def test_sizes(model_class):
    model = model_class(4, 5).eval()
    field = RECEPTIVE_FIELDS[model_class]
    assert model.dims == 2
    assert model.receptive_field == field
    assert model.output_size(field) == 1 and model.input_size(1) == field
    assert model.output_size(100) == 100 - SHRINK[model_class]
    assert model.input_size(model.output_size(100)) == 100
    with torch.no_grad():
        assert model(torch.zeros(2, 4, field, field)).shape == (2, 5, 1, 1)
        assert model(torch.zeros(1, 4, 100, 90)).shape == (1, 5, 100 - SHRINK[model_class], 90 - SHRINK[model_class])
        with pytest.raises(ValueError, match="receptive field"):
            model(torch.zeros(1, 4, field - 1, field + 5))


def test_two_path_dense_slice():
    with torch.no_grad():
        assert TwoPathCNN(4, 5).eval()(torch.zeros(1, 4, 65, 65)).shape == (1, 5, 33, 33)


@pytest.mark.parametrize("model_class", MODELS)
def test_dense_equals_patchwise(model_class):
    torch.manual_seed(1)
    model = model_class(4, 5).eval()
    randomise(model)
    field = model.receptive_field
    x = torch.randn(1, 4, 80, 70)
    with torch.no_grad():
        dense = model(x)
        assert dense.std() > 0.1  # non-trivial logits
        rows = torch.randint(0, dense.shape[2], (5,)).tolist()
        cols = torch.randint(0, dense.shape[3], (5,)).tolist()
        # Output (row, col) depends on the receptive-field patch whose top-left input pixel is (row, col).
        patches = torch.cat([x[:, :, row : row + field, col : col + field] for row, col in zip(rows, cols)])
        patchwise = model(patches)
    assert patchwise.shape == (5, 5, 1, 1)
    difference = patchwise[:, :, 0, 0] - dense[0, :, rows, cols].T
    assert difference.abs().max() < 1e-4


def test_output_offsets_centre_the_patch():
    offsets = {cls: cls(4, 5).output_offset for cls in MODELS}
    assert offsets == {TwoPathCNN: 16, InputCascadeCNN: 32, LocalCascadeCNN: 27, MFCascadeCNN: 26}


@pytest.mark.parametrize("model_class", MODELS[1:])
def test_cascade_joins_aligned_maps(model_class):
    """The second CNN's map at the join point and the first CNN's predictions cover the same pixels."""
    cascade = model_class(4, 5).eval()
    second_inputs = []
    cascade.second.register_forward_pre_hook(lambda module, args: second_inputs.append(args[0]))
    size = cascade.receptive_field + 3
    x = torch.zeros(1, 4, size, size)
    x[0, 0] = torch.arange(size * size, dtype=torch.float32).reshape(size, size)  # each pixel holds its index
    with torch.no_grad():
        cascade(x)
    index = int(second_inputs[0][0, 0, 0, 0])
    corner = (index // size, index % size)  # input pixel at the second CNN's input (0, 0)
    join_window = {InputCascadeCNN: 1, LocalCascadeCNN: 10, MFCascadeCNN: 13}[model_class]
    for start in corner:
        # Join-map pixel 0 sees second-input pixels 0 .. window - 1; the first CNN's pixel 0 labels input pixel 16.
        # The local cascade's window is even (10): its centre is half a pixel off any pixel.
        assert abs(start + (join_window - 1) / 2 - cascade.first.output_offset) <= 0.5
        assert cascade.output_offset == start + cascade.second.output_offset


@pytest.mark.parametrize("model_class", MODELS[1:])
def test_cascade_first_cnn_stays_frozen(model_class):
    torch.manual_seed(2)
    first = TwoPathCNN(4, 5)
    randomise(first, seed=3)
    cascade = model_class(4, 5, first=first)
    assert cascade.first is first and isinstance(cascade.second, TwoPathCNN)
    cascade.train()
    assert not cascade.first.training and cascade.second.training
    first_before = [p.clone() for p in cascade.first.parameters()]
    second_before = [p.clone() for p in cascade.second.parameters()]
    optimizer = torch.optim.SGD(cascade.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    field = cascade.receptive_field
    logits = cascade(torch.randn(2, 4, field, field))
    loss = nn.functional.cross_entropy(logits, torch.randint(0, 5, (2, 1, 1)))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert all(not p.requires_grad for p in cascade.first.parameters())
    assert all(torch.equal(a, b) for a, b in zip(first_before, cascade.first.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(second_before, cascade.second.parameters(), strict=True))
    cascade.eval()
    cascade.train(True)
    assert not cascade.first.training


def test_cascade_rejects_first_cnn_with_other_channels():
    with pytest.raises(ValueError, match="channels"):
        InputCascadeCNN(4, 5, first=TwoPathCNN(3, 5))


def test_cascade_output_layer_is_second_cnns():
    cascade = MFCascadeCNN(4, 5)
    assert isinstance(cascade, CascadeCNN)
    assert cascade.output_layer is cascade.second.output_layer
    assert cascade.output_layer.in_channels == 229 and cascade.output_layer.kernel_size == (21, 21)
    assert LocalCascadeCNN(4, 5).second.local_second[0].conv.in_channels == 69


def test_paper_weight_init():
    model = TwoPathCNN(4, 5)
    for conv in model.modules():
        if isinstance(conv, nn.Conv2d):
            assert conv.weight.abs().max() <= 0.005
            assert conv.weight.abs().max() > 0.004  # uniform over the whole range
            assert torch.count_nonzero(conv.bias) == 0


@pytest.mark.parametrize("model_class", MODELS)
def test_init_output_bias_sets_log_frequencies(model_class):
    model = model_class(4, 5)
    frequencies = [0.9, 0.04, 0.03, 0.02, 0.01]
    model.init_output_bias(frequencies)
    expected = torch.log(torch.tensor(frequencies))
    assert torch.allclose(model.output_layer.bias, expected, atol=1e-6)
    # Counts give the same biases: they are normalised to frequencies first.
    model.init_output_bias(torch.tensor([900.0, 40.0, 30.0, 20.0, 10.0]))
    assert torch.allclose(model.output_layer.bias, expected, atol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        model.init_output_bias([0.5, 0.5, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="5 positive"):
        model.init_output_bias([0.5, 0.5])


def test_mismatched_path_sizes_are_rejected():
    with pytest.raises(ValueError, match="global kernel"):
        TwoPathCNN(4, 5, global_kernel=11)
