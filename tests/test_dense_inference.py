"""Dense inference equals the model on each voxel's own patch, and stays inside the brain."""

import numpy as np
import torch

from lesionseg.inference.dense import predict_volume, tile_count
from lesionseg.models.deepmedic import DeepMedic


def own_patch_probabilities(model, image: np.ndarray, voxel) -> np.ndarray:
    """The model on the block holding ``voxel`` alone, cut from the reflect-padded image."""
    m, grid = model.margin, model.grid
    padded = np.pad(image, [(0, 0)] + [(m, m)] * 3, mode="reflect")
    start = [v - v % grid for v in voxel]
    size = grid + 2 * m
    patch = np.zeros((image.shape[0], size, size, size), np.float32)
    cut = padded[(slice(None), *(slice(s, s + size) for s in start))]
    patch[(slice(None), *(slice(0, n) for n in cut.shape[1:]))] = cut
    with torch.no_grad():
        out = torch.softmax(model(torch.from_numpy(patch)[None]), dim=1)[0].numpy()
    return out[(slice(None), *(v - s for v, s in zip(voxel, start)))]


def test_deepmedic_dense_equals_own_patch_at_random_voxels():
    torch.manual_seed(0)
    model = DeepMedic(2, 3, maps=(6,) * 8, fc_maps=(12, 12)).eval()
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 23, 19, 16)).astype(np.float32)
    mask = np.ones(image.shape[1:], dtype=bool)
    dense = predict_volume(model, image, mask, torch.device("cpu"), tile_output=9, batch_size=3)
    assert dense.shape == (3, 23, 19, 16)
    np.testing.assert_allclose(dense.sum(axis=0), 1.0, atol=1e-5)
    for _ in range(8):
        voxel = tuple(int(rng.integers(0, n)) for n in image.shape[1:])
        np.testing.assert_allclose(dense[(slice(None), *voxel)], own_patch_probabilities(model, image, voxel),
                                   atol=1e-4)
    # The tiling does not change the result.
    other = predict_volume(model, image, mask, torch.device("cpu"), tile_output=12, batch_size=1)
    np.testing.assert_allclose(other, dense, atol=1e-5)


def test_outside_the_brain_is_background_and_empty_tiles_are_skipped():
    model = DeepMedic(1, 2, maps=(4,) * 8, fc_maps=(8, 8)).eval()
    image = np.random.default_rng(1).normal(size=(1, 30, 30, 30)).astype(np.float32)
    mask = np.zeros((30, 30, 30), dtype=bool)
    mask[2:8, 2:8, 2:8] = True
    calls = []
    forward = model.forward
    model.forward = lambda x: calls.append(x.shape[0]) or forward(x)
    dense = predict_volume(model, image, mask, torch.device("cpu"), tile_output=9, batch_size=8)
    assert sum(calls) == 1 and tile_count((30, 30, 30), 9, 3) == 64  # one of 64 tiles holds brain
    assert np.all(dense[0, ~mask] == 1) and np.all(dense[1, ~mask] == 0)


def test_havaei_models_dense_equals_own_patch_slice_by_slice():
    import pytest

    from lesionseg.models.havaei import InputCascadeCNN, LocalCascadeCNN, MFCascadeCNN, TwoPathCNN

    rng = np.random.default_rng(2)
    image = rng.normal(size=(4, 24, 21, 3)).astype(np.float32)
    mask = np.ones(image.shape[1:], dtype=bool)
    torch.manual_seed(0)
    for model_class in (TwoPathCNN, InputCascadeCNN, LocalCascadeCNN, MFCascadeCNN):
        model = model_class(4, 5).eval()
        for parameter in model.parameters():  # the paper's tiny init gives near-uniform outputs
            parameter.data.mul_(20)
        dense = predict_volume(model, image, mask, torch.device("cpu"), batch_size=2)
        before = model.output_offset
        after = model.receptive_field - 1 - before
        padded = np.pad(image, [(0, 0), (before, after), (before, after), (0, 0)], mode="reflect")
        for _ in range(5):
            x, y, z = (int(rng.integers(0, n)) for n in image.shape[1:])
            patch = padded[:, x:x + model.receptive_field, y:y + model.receptive_field, z]
            with torch.no_grad():
                own = torch.softmax(model(torch.from_numpy(np.ascontiguousarray(patch))[None]), dim=1)[0, :, 0, 0]
            assert dense[:, x, y, z] == pytest.approx(own.numpy(), abs=1e-4), model_class.__name__
        assert dense[:, 0, 0, 0].std() > 1e-3  # not a constant output
