"""Dense inference equals the model on each voxel's own patch, stays inside the brain, and fits its memory budget."""

import numpy as np
import pytest
import torch

from lesionseg.inference.dense import choose_tile_output, estimate_memory, plan_tiles, predict_volume
from lesionseg.models.deepmedic import DeepMedic
from lesionseg.models.havaei import InputCascadeCNN, LocalCascadeCNN, MFCascadeCNN, TwoPathCNN

CPU = torch.device("cpu")


def small_deepmedic(in_channels: int = 2, n_classes: int = 3) -> DeepMedic:
    torch.manual_seed(0)
    return DeepMedic(in_channels, n_classes, maps=(6,) * 8, fc_maps=(12, 12)).eval()


def ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


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
    model = small_deepmedic()
    rng = np.random.default_rng(0)
    # Sides shorter than the model's context (26): the reflection wraps, as np.pad's does.
    image = rng.normal(size=(2, 23, 19, 16)).astype(np.float32)
    mask = np.ones(image.shape[1:], dtype=bool)
    dense = predict_volume(model, image, mask, CPU, tile_output=9, batch_size=3)
    assert dense.shape == (3, 23, 19, 16)
    np.testing.assert_allclose(dense.sum(axis=0), 1.0, atol=1e-5)
    for _ in range(8):
        voxel = tuple(int(rng.integers(0, n)) for n in image.shape[1:])
        np.testing.assert_allclose(dense[(slice(None), *voxel)], own_patch_probabilities(model, image, voxel),
                                   atol=1e-4)
    # The tiling (explicit or chosen for a budget) does not change the result.
    other = predict_volume(model, image, mask, CPU, tile_output=12, batch_size=1)
    np.testing.assert_allclose(other, dense, atol=1e-5)
    auto = predict_volume(model, image, mask, CPU, tile_output=None, memory_budget_mb=64)
    np.testing.assert_allclose(auto, dense, atol=1e-5)


def test_tiling_the_brain_box_equals_tiling_the_volume_inside_the_brain():
    model = small_deepmedic()
    image = np.random.default_rng(3).normal(size=(2, 26, 22, 20)).astype(np.float32)
    mask = ball(image.shape[1:], (15, 12, 11), 7)  # its box starts off the coarse grid
    whole = predict_volume(model, image, np.ones_like(mask), CPU, tile_output=9)
    brain = predict_volume(model, image, mask, CPU, tile_output=6, batch_size=3)
    np.testing.assert_allclose(brain[:, mask], whole[:, mask], atol=1e-5)


def test_outside_the_brain_is_background_and_empty_tiles_are_skipped():
    model = DeepMedic(1, 2, maps=(4,) * 8, fc_maps=(8, 8)).eval()
    image = np.random.default_rng(1).normal(size=(1, 30, 30, 30)).astype(np.float32)
    mask = np.zeros((30, 30, 30), dtype=bool)
    mask[2:8, 2:8, 2:8] = True
    mask[20, 20, 20] = True
    calls = []
    forward = model.forward
    model.forward = lambda x: calls.append(x.shape[0]) or forward(x)
    assert len(plan_tiles(model, mask, 1, CPU, tile_output=9).regions) == 2  # of the box's 3^3 tiles
    # The module as it is, whose forward passes are counted (not its inference-time copy).
    dense = predict_volume(model, image, mask, CPU, tile_output=9, batch_size=8, inference_copy=False)
    assert calls == [2]
    assert np.all(dense[0, ~mask] == 1) and np.all(dense[1, ~mask] == 0)
    empty = predict_volume(model, image, np.zeros_like(mask), CPU, tile_output=9, inference_copy=False)
    assert calls == [2] and np.all(empty[0] == 1)


def test_havaei_models_dense_equals_own_patch_slice_by_slice():
    rng = np.random.default_rng(2)
    image = rng.normal(size=(4, 24, 21, 3)).astype(np.float32)
    mask = np.ones(image.shape[1:], dtype=bool)
    torch.manual_seed(0)
    for model_class in (TwoPathCNN, InputCascadeCNN, LocalCascadeCNN, MFCascadeCNN):
        model = model_class(4, 5).eval()
        for parameter in model.parameters():  # the paper's tiny init gives near-uniform outputs
            parameter.data.mul_(20)
        dense = predict_volume(model, image, mask, CPU, batch_size=2)
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
        # Slices cropped to the brain's box see the same context as whole slices.
        brain = ball(mask.shape, (14, 9, 1), 6)
        cropped = predict_volume(model, image, brain, CPU, batch_size=3)
        np.testing.assert_allclose(cropped[:, brain], dense[:, brain], atol=1e-5)


def test_memory_estimate_grows_with_the_tile_and_the_batch():
    model = small_deepmedic()
    one = estimate_memory(model, 2, (9, 9, 9))
    assert estimate_memory(model, 2, (18, 18, 18)) > one
    assert estimate_memory(model, 2, (9, 9, 9), batch_size=2) == pytest.approx(2 * one, rel=0.01)
    # More than the two float32 input batches it counts (the one computing and the next).
    assert one > 2 * 4 * 2 * model.input_size(9) ** 3


def test_chosen_tile_fits_the_budget_on_the_grid():
    model = small_deepmedic()
    tiles = [choose_tile_output(model, 2, CPU, budget) for budget in (1, 8, 32, 128, 512)]
    assert tiles == sorted(tiles) and tiles[-1] > tiles[0]
    assert all(t % model.grid == 0 for t in tiles)
    assert tiles[0] == model.grid  # never below the grid, even over budget
    for budget, tile in zip((8, 32, 128, 512), tiles[1:]):
        assert estimate_memory(model, 2, (tile,) * 3) <= budget * 2**20 < estimate_memory(model, 2, (tile + 3,) * 3)
    assert choose_tile_output(model, 2, CPU, 128, batch_size=4) <= tiles[3]
    # Never past the extent to cover; then as small as covers it with as few tiles.
    assert choose_tile_output(model, 2, CPU, 4096, shape=(20, 31, 10)) == 33
    assert choose_tile_output(model, 2, CPU, 4096, shape=(8, 7, 5)) == 9
    assert choose_tile_output(model, 2, CPU, 32, shape=(100, 100, 100)) == tiles[2] < 100


def test_tiles_shrink_per_axis_to_cover_the_brain_box_with_as_few():
    model = small_deepmedic()
    mask = np.zeros((40, 40, 40), dtype=bool)
    mask[4:30, 5:27, 1:21] = True  # from the grid below it: 27 x 24 x 21
    plan = plan_tiles(model, mask, 2, CPU, tile_output=16)  # 15 on the grid: 2 tiles per axis
    assert plan.size == (15, 12, 12) and len(plan.regions) == 8


def test_bfloat16_agrees_with_float32_on_the_cpu():
    model = small_deepmedic()
    image = np.random.default_rng(4).normal(size=(2, 12, 12, 12)).astype(np.float32)
    mask = np.ones(image.shape[1:], dtype=bool)
    full = predict_volume(model, image, mask, CPU, tile_output=12)
    half = predict_volume(model, image, mask, CPU, tile_output=12, precision="bfloat16")
    np.testing.assert_allclose(half, full, atol=2e-2)
    assert np.abs(half - full).max() > 0  # bfloat16 did run
    with pytest.raises(ValueError, match="CUDA"):
        predict_volume(model, image, mask, CPU, precision="float16")
    with pytest.raises(ValueError, match="precision"):
        predict_volume(model, image, mask, CPU, precision="float64")


def test_progress_bar_on_stderr(capsys):
    model = small_deepmedic()
    image = np.zeros((2, 18, 9, 9), dtype=np.float32)
    mask = np.ones(image.shape[1:], dtype=bool)
    predict_volume(model, image, mask, CPU, tile_output=9, batch_size=1)
    assert capsys.readouterr().err == ""
    predict_volume(model, image, mask, CPU, tile_output=9, batch_size=1, progress=True)
    captured = capsys.readouterr()
    assert "2/2" in captured.err and captured.out == ""


def test_chosen_tiles_are_the_fewest_that_fit_split_across_the_longest_axis():
    model = small_deepmedic()
    mask = np.zeros((60, 30, 30), dtype=bool)
    mask[:54, :27, :27] = True
    whole, half = (estimate_memory(model, 2, size) for size in ((54, 27, 27), (27, 27, 27)))
    between = (whole + half) / 2 / 2**20
    assert plan_tiles(model, mask, 2, CPU, memory_budget_mb=2 * whole / 2**20).size == (54, 27, 27)
    plan = plan_tiles(model, mask, 2, CPU, memory_budget_mb=between)
    assert plan.size == (27, 27, 27) and len(plan.regions) == 2 and plan.batch_size == 1
    # The same tiles however many the batch would hold: on the CPU chosen tiles come one per forward pass.
    assert plan_tiles(model, mask, 2, CPU, batch_size=4, memory_budget_mb=between) == plan
