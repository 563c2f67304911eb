"""Dense inference by tiling, for 3D models (DeepMedic) and 2D models (Havaei, slice by slice).

A volume is reflect-padded by the model's context, cut into tiles whose output
regions cover it (3D: boxes of ``tile_output`` voxels starting at multiples of
the model's coarse-grid step; 2D: whole axial slices), tiles with no brain voxel
in their output region are skipped, and the per-class probabilities are stitched
back. The result at every voxel equals the model applied to that voxel's own
patch. Peak memory is bounded by the tile size, not the volume.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _margins(model: nn.Module) -> tuple[int, int]:
    """Context voxels before and after the output region along one axis.

    Models whose window has no centre pixel (an even receptive field) say where
    their output sits with ``output_offset``.
    """
    total = model.input_size(1) - 1
    before = getattr(model, "output_offset", total // 2)
    return before, total - before


def tile_side(tile_output: int, grid: int = 1) -> int:
    """Output side of a 3D tile: ``tile_output`` rounded down to the model's coarse-grid step."""
    return max(grid, tile_output - tile_output % grid)


def _tiles_3d(shape: tuple[int, ...], tile: int) -> Iterator[tuple[slice, ...]]:
    starts = [range(0, n, tile) for n in shape]
    for corner in itertools.product(*starts):
        yield tuple(slice(c, min(c + tile, n)) for c, n in zip(corner, shape, strict=True))


@torch.inference_mode()
def predict_volume(
    model: nn.Module,
    image: np.ndarray,
    brain_mask: np.ndarray,
    device: torch.device | None = None,
    tile_output: int = 29,
    batch_size: int = 4,
) -> np.ndarray:
    """Class probabilities ``(n_classes, x, y, z)`` float32 for ``image`` ``(c, x, y, z)``.

    Outside ``brain_mask`` the probabilities are those of class 0 (background) = 1.
    """
    device = device or default_device()
    model = model.to(device).eval()
    n_classes = model.n_classes
    shape = image.shape[1:]
    before, after = _margins(model)
    # 2D models see one axial slice: no context along z.
    spatial_pad = [(before, after)] * (3 if model.dims == 3 else 2) + ([] if model.dims == 3 else [(0, 0)])
    padded = np.pad(image.astype(np.float32, copy=False), [(0, 0), *spatial_pad], mode="reflect")
    probabilities = np.zeros((n_classes, *shape), dtype=np.float32)
    probabilities[0] = 1.0
    if model.dims == 3:
        tile = tile_side(tile_output, getattr(model, "grid", 1))
        regions = [r for r in _tiles_3d(shape, tile) if brain_mask[r].any()]
        for batch_start in range(0, len(regions), batch_size):
            batch_regions = regions[batch_start:batch_start + batch_size]
            inputs = []
            for region in batch_regions:
                # Every tile is cut with the full tile size (padding the volume's far side
                # when needed) so a batch stacks, and so coarse grids stay aligned.
                inputs.append(_cut(padded, region, tile, before, after))
            batch = torch.from_numpy(np.stack(inputs)).to(device)
            out = torch.softmax(model(batch).float(), dim=1).cpu().numpy()
            for region, probs in zip(batch_regions, out, strict=True):
                size = tuple(r.stop - r.start for r in region)
                probabilities[(slice(None), *region)] = probs[(slice(None), *(slice(0, s) for s in size))]
    else:
        slices = [z for z in range(shape[2]) if brain_mask[..., z].any()]
        for batch_start in range(0, len(slices), batch_size):
            zs = slices[batch_start:batch_start + batch_size]
            batch = torch.from_numpy(np.stack([padded[..., z] for z in zs])).to(device)
            out = torch.softmax(model(batch).float(), dim=1).cpu().numpy()
            for z, probs in zip(zs, out, strict=True):
                probabilities[..., z] = probs
    probabilities[:, ~brain_mask] = 0.0
    probabilities[0, ~brain_mask] = 1.0
    return probabilities


def _cut(padded: np.ndarray, region: tuple[slice, ...], tile: int, before: int, after: int) -> np.ndarray:
    """The input of the tile whose output region starts at ``region``'s corner, zero-extended past the end."""
    size = tile + before + after
    out = np.zeros((padded.shape[0], size, size, size), dtype=np.float32)
    source = tuple(slice(r.start, min(r.start + size, n)) for r, n in zip(region, padded.shape[1:], strict=True))
    out[(slice(None), *(slice(0, s.stop - s.start) for s in source))] = padded[(slice(None), *source)]
    return out


def tile_count(shape: tuple[int, ...], tile_output: int, grid: int = 1) -> int:
    """How many 3D tiles cover ``shape`` (before skipping those outside the brain)."""
    tile = tile_side(tile_output, grid)
    return math.prod(math.ceil(n / tile) for n in shape)
