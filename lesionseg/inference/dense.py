"""Dense inference by tiling, for 3D models (DeepMedic) and 2D models (Havaei, slice by slice).

The brain's bounding box is cut into tiles: 3D models get cubes of
``tile_output`` output voxels starting at multiples of the model's coarse-grid
step; 2D models get axial slices of the box (they are fully convolutional, so a
slice is one tile). Each tile's input is its output box widened by the model's
context, read from the volume with reflection at its borders (as
``np.pad(mode="reflect")``, without padding the whole volume). Tiles with no
brain voxel are skipped and the per-class probabilities are stitched back. The
result at every voxel equals the model applied to that voxel's own patch.

Memory: besides the input and output volumes, peak memory is that of one batch
of tiles. With ``tile_output=None`` the largest tile whose batch fits a memory
budget is chosen (:func:`choose_tile_output`), from the activations of the
model's forward pass measured on shape-only (meta) tensors
(:func:`estimate_memory`).

On CUDA, input batches are cut into pinned host memory and copied on a side
stream while the previous batch computes; results come back into pinned
memory and are stitched while the next batch computes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import sys
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from tqdm import tqdm

from lesionseg.devices import gpu_memory_share
from lesionseg.inference.deepmedic_inference import inference_network
from lesionseg.masks import bounding_box

log = logging.getLogger(__name__)

PRECISIONS: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_CPU_BUDGET_MB = 2048
# Part of a GPU's memory its jobs plan for: the rest covers the CUDA context, cuDNN workspaces and the caching
# allocator's fragmentation.
CUDA_USABLE_FRACTION = 0.85
# Activations counted on meta tensors leave out convolution workspaces and layout copies; the paper DeepMedic's
# measured peak RSS on the CPU (oneDNN) was 1.4x the count.
WORKSPACE_FACTOR = 1.5
# Most tiles of the boxes planned by their context (more: the budget's cubes).
MOST_TILES_PLANNED = 8
# Largest tile side tried when no volume shape caps it (a 255^3 output is already beyond any brain MRI).
MAX_TILE_OUTPUT = 255

Region = tuple[slice, slice, slice]


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


def input_context(model: nn.Module) -> tuple[tuple[int, int], ...]:
    """Context (before, after) along x, y, z; 2D models see one axial slice, so none along z."""
    margins = _margins(model)
    return (margins, margins, margins if model.dims == 3 else (0, 0))


def tile_side(tile_output: int, grid: int = 1) -> int:
    """Output side of a 3D tile: ``tile_output`` rounded down to the model's coarse-grid step."""
    return max(grid, tile_output - tile_output % grid)


class _LiveBytes(TorchDispatchMode):
    """The most bytes that the tensors made by the operations run under it hold at once.

    A tensor counts from the operation that makes it until Python frees it; views
    and in-place results share their input's memory and do not count.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if not any(result.alias_info is not None for result in func._schema.returns):
            for tensor in tree_leaves(out):
                if isinstance(tensor, torch.Tensor):
                    self._allocate(tensor)
        return out

    def _allocate(self, tensor: torch.Tensor) -> None:
        size = tensor.untyped_storage().nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(tensor, self._release, size)

    def _release(self, size: int) -> None:
        self.live -= size


def estimate_memory(model: nn.Module, n_channels: int, output_size: Sequence[int], batch_size: int = 1) -> int:
    """Estimated peak bytes of a forward pass of ``batch_size`` tiles of ``output_size`` (per spatial axis).

    The forward runs on meta tensors (shapes only: nothing is computed or
    allocated), counting the activations alive at once, plus two input batches
    (the one computing and the next one being prepared), times
    :data:`WORKSPACE_FACTOR`. Float32 throughout: reduced precision only leaves
    more headroom.
    """
    shape = (batch_size, n_channels, *(model.input_size(o) for o in output_size))
    state = {name: torch.empty_like(tensor, device="meta")
             for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers())}
    # Not in inference mode, where views would not keep their base tensor (and its count) alive and eval-mode
    # dropout would count as a copy: under no_grad both behave as the memory they share does.
    with torch.inference_mode(False), torch.no_grad():
        inputs = torch.empty(shape, device="meta")
        with _LiveBytes() as counter:
            functional_call(model, state, (inputs,))
    return int(WORKSPACE_FACTOR * (counter.peak + 2 * inputs.numel() * inputs.element_size()))


def cuda_memory_budget(device: torch.device) -> int:
    """Bytes one batch may use on a CUDA device: this job's share of the device's memory, planned, not raced.

    The share (:func:`lesionseg.devices.gpu_memory_share`: the whole device
    unless ``gpus: jobs_per_gpu`` lets jobs share it) of
    :data:`CUDA_USABLE_FRACTION` of its total memory, less what this job already
    holds (its networks). Only if less is free than that (a process outside the
    workflow uses the device) does the free memory bound it, with a warning.
    """
    total = torch.cuda.get_device_properties(device).total_memory
    held = torch.cuda.memory_allocated(device)
    planned = int(CUDA_USABLE_FRACTION * total * gpu_memory_share()) - held
    # Blocks the caching allocator holds but no tensor uses are free for this process too.
    free = torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device) - held
    if free < planned:
        log.warning("GPU %s: %.0f MB free, less than the %.0f MB planned for this job: another process uses it",
                    device, free / 2**20, planned / 2**20)
    return max(0, min(planned, free))


def memory_budget(device: torch.device, memory_budget_mb: float | None = None) -> int:
    """Bytes one batch may use: on CUDA :func:`cuda_memory_budget`, on the CPU ``memory_budget_mb`` (2048)."""
    if device.type == "cuda":
        return cuda_memory_budget(device)
    return int((memory_budget_mb or DEFAULT_CPU_BUDGET_MB) * 2**20)


def choose_tile_output(
    model: nn.Module,
    n_channels: int,
    device: torch.device,
    memory_budget_mb: float | None = None,
    *,
    batch_size: int = 1,
    shape: Sequence[int] | None = None,
) -> int:
    """The largest 3D tile output side, a multiple of the model's grid, whose batch fits the memory budget.

    ``memory_budget_mb`` applies on the CPU (:func:`memory_budget`). With
    ``shape`` (the extent to cover), the side is at most that extent's longest
    axis rounded up to the grid. Never below the grid step, even when that
    exceeds the budget.
    """
    grid = getattr(model, "grid", 1)
    budget = memory_budget(device, memory_budget_mb)
    limit = math.ceil(max(shape) / grid) if shape else MAX_TILE_OUTPUT // grid

    def fits(steps: int) -> bool:
        return estimate_memory(model, n_channels, (steps * grid,) * 3, batch_size) <= budget

    # Memory grows with the tile: bisect for the largest number of grid steps that fits.
    low, high = 1, limit
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low * grid


def _least_context_size(model: nn.Module, n_channels: int, device: torch.device, memory_budget_mb: float | None,
                        batch_size: int, extent: Sequence[int]) -> tuple[int, int, int]:
    """The 3D tile box covering ``extent`` whose tiles' inputs hold the fewest voxels, among those of at most
    :data:`MOST_TILES_PLANNED` tiles whose batch fits the memory budget; else the budget's cubes'
    (:func:`choose_tile_output`).

    A box is given by its number of tiles per axis (each side the smallest grid
    multiple that covers the axis with as many). Each tile recomputes its
    context, so fewer tiles, and splits across the longer axes, cost less: a box
    of 144 x 87 x 132 (2 tiles) for a BraTS brain's box in 2 GB, where the cubes
    give 4. Boxes are tried cheapest first; one that holds a box already too
    large is not tried.
    """
    grid = getattr(model, "grid", 1)
    budget = memory_budget(device, memory_budget_mb)

    def tiles(size: Sequence[int]) -> int:
        return math.prod(math.ceil(n / side) for n, side in zip(extent, size, strict=True))

    counts = itertools.product(*(range(1, min(MOST_TILES_PLANNED, math.ceil(n / grid)) + 1) for n in extent))
    sizes = {tuple(math.ceil(math.ceil(n / c) / grid) * grid for n, c in zip(extent, count, strict=True))
             for count in counts if math.prod(count) <= MOST_TILES_PLANNED}
    too_large: list[tuple[int, ...]] = []
    for size in sorted(sizes, key=lambda size: tiles(size) * math.prod(model.input_size(s) for s in size)):
        if any(all(s >= t for s, t in zip(size, large, strict=True)) for large in too_large):
            continue
        if estimate_memory(model, n_channels, size, batch_size) <= budget:
            return size
        too_large.append(size)
    tile = choose_tile_output(model, n_channels, device, memory_budget_mb, batch_size=batch_size, shape=extent)
    return _balanced_size(tile, extent, grid)


def _balanced_size(tile: int, extent: Sequence[int], grid: int) -> tuple[int, int, int]:
    """Per axis, the smallest grid multiple that covers ``extent`` with as few ``tile``-sided tiles.

    As many tiles, each no larger (so no more memory), and less computation spent
    on context and past the brain's box.
    """
    sides = []
    for n in extent:
        side = math.ceil(n / math.ceil(n / tile))
        sides.append(math.ceil(side / grid) * grid)
    return tuple(sides)


@dataclass(frozen=True)
class TilePlan:
    """How a volume is tiled: every tile's output box has ``size`` (x, y, z); ``regions`` are those holding brain.

    Regions are clipped to the volume; the tiles themselves are cut at full size
    so that a batch stacks.
    """

    size: tuple[int, int, int]
    regions: list[Region]
    batch_size: int = 1  # tiles per forward pass


def plan_tiles(
    model: nn.Module,
    brain_mask: np.ndarray,
    n_channels: int,
    device: torch.device,
    tile_output: int | None = None,
    batch_size: int = 2,
    memory_budget_mb: float | None = None,
) -> TilePlan:
    """The tiles covering the brain: 3D boxes aligned to the model's grid, or 2D axial slices of the brain's box.

    3D boxes have at most ``tile_output`` (rounded down to the grid; None: chosen
    by :func:`choose_tile_output`) voxels per side, shrunk per axis to cover the
    brain's box with as few tiles. Chosen 3D tiles on the CPU come one per
    forward pass, whatever ``batch_size``: there a batch of tiles runs no faster
    than one tile of their volume, and the larger tile computes less context per
    output voxel.
    """
    box_slices = bounding_box(brain_mask)
    if box_slices is None:
        return TilePlan((1, 1, 1), [])
    box = [(s.start, s.stop) for s in box_slices]
    if model.dims == 2:
        (x0, x1), (y0, y1), (z0, z1) = box
        size = (x1 - x0, y1 - y0, 1)
        slices = [(slice(x0, x1), slice(y0, y1), slice(z, z + 1)) for z in range(z0, z1)]
        budget = memory_budget(device, memory_budget_mb)
        return TilePlan(size, [r for r in slices if brain_mask[r].any()],
                        fitting_batch_size(model, n_channels, size[:2], batch_size, budget))
    grid = getattr(model, "grid", 1)
    # Tiles start on the model's coarse grid (anchored at voxel 0) so that they agree with each other.
    starts = [first - first % grid for first, _ in box]
    extent = [last - start for start, (_, last) in zip(starts, box, strict=True)]
    if tile_output is None:
        if device.type == "cpu":
            batch_size = 1
        size = _least_context_size(model, n_channels, device, memory_budget_mb, batch_size, extent)
    else:
        size = _balanced_size(tile_side(tile_output, grid), extent, grid)
    axes = [range(start, last, side) for start, (_, last), side in zip(starts, box, size, strict=True)]
    regions = [tuple(slice(c, min(c + side, n)) for c, side, n in zip(corner, size, brain_mask.shape, strict=True))
               for corner in itertools.product(*axes)]
    return TilePlan(size, [r for r in regions if brain_mask[r].any()], batch_size)


def fitting_batch_size(model: nn.Module, n_channels: int, output_size: Sequence[int], batch_size: int,
                       budget: int) -> int:
    """The largest batch, at most ``batch_size`` tiles of ``output_size``, whose forward pass fits ``budget`` bytes
    (at least 1)."""
    low, high = 1, batch_size
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if estimate_memory(model, n_channels, output_size, middle) <= budget else (
            low, middle - 1)
    if low < batch_size:
        log.info("batches of %d tiles instead of %d: %d fit the memory budget of %.0f MB", low, batch_size, low,
                 budget / 2**20)
    return low


def _axis_index(start: int, size: int, n: int) -> slice | np.ndarray:
    """Indices ``start .. start + size - 1`` of an axis of ``n`` voxels, mirrored at its ends as ``np.pad`` reflect.

    A slice when no index falls outside the axis (the usual case: a plain copy).
    """
    if n == 1:
        index = np.zeros(size, dtype=np.intp)
    else:
        # Reflection about the end voxels repeats with period 2 (n - 1), for contexts longer than the axis too.
        period = 2 * (n - 1)
        index = np.abs(np.arange(start, start + size)) % period
        index = np.where(index < n, index, period - index)
    # Mirrored indices move by +-1 per step, so covering size - 1 voxels in size - 1 steps means no mirroring.
    return slice(int(index[0]), int(index[0]) + size) if index[-1] - index[0] == size - 1 else index


def _cut(image: np.ndarray, region: Region, size: Sequence[int], context: Sequence[tuple[int, int]],
         out: np.ndarray) -> None:
    """Write into ``out`` the input of the tile whose output box of ``size`` starts at ``region``'s corner."""
    index = [_axis_index(r.start - before, s + before + after, n)
             for r, s, (before, after), n in zip(region, size, context, image.shape[1:], strict=True)]
    if all(isinstance(i, slice) for i in index):
        out[...] = image[(slice(None), *index)]
    else:
        # Open-mesh indexing gathers just the tile's voxels, never a slab of the volume.
        arrays = [np.arange(i.start, i.stop) if isinstance(i, slice) else i for i in index]
        out[...] = image[(slice(None), *np.ix_(*arrays))]


def _host_batch(image: np.ndarray, regions: Sequence[Region], plan: TilePlan,
                context: Sequence[tuple[int, int]], pin: bool) -> torch.Tensor:
    """The batch of tile inputs ``(B, C, X, Y, Z)`` float32, in pinned memory when ``pin`` (for async copies)."""
    input_size = [s + before + after for s, (before, after) in zip(plan.size, context, strict=True)]
    batch = torch.empty((len(regions), image.shape[0], *input_size), dtype=torch.float32, pin_memory=pin)
    array = batch.numpy()
    for i, region in enumerate(regions):
        _cut(image, region, plan.size, context, array[i])
    return batch


def _upload(batch: torch.Tensor, device: torch.device, side_stream: torch.cuda.Stream | None) -> torch.Tensor:
    """The batch on ``device``; on CUDA copied on ``side_stream`` so that it overlaps the computation in flight."""
    if device.type != "cuda":
        return batch
    with torch.cuda.stream(side_stream):
        on_device = batch.to(device, non_blocking=True)
    compute = torch.cuda.current_stream(device)
    compute.wait_stream(side_stream)  # the forward pass must not start before the copy ends
    on_device.record_stream(compute)  # made on the side stream, used and freed on the compute stream
    return on_device


def _forward(model: nn.Module, batch: torch.Tensor, precision: str) -> torch.Tensor:
    """Class probabilities ``(B, K, X, Y, Z)`` float32 of a batch of tiles (2D models: Z = 1)."""
    inputs = batch if model.dims == 3 else batch[..., 0]
    with torch.autocast(batch.device.type, dtype=PRECISIONS[precision], enabled=precision != "float32"):
        logits = model(inputs)
    probabilities = torch.softmax(logits.float(), dim=1)
    return probabilities if model.dims == 3 else probabilities[..., None]


def _download(probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
    """The probabilities on the host, and on CUDA the event that marks the (asynchronous) copy done."""
    if probabilities.device.type != "cuda":
        return probabilities, None
    host = torch.empty(probabilities.shape, dtype=torch.float32, pin_memory=True)
    host.copy_(probabilities, non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    return host, done


def _stitch(probabilities: np.ndarray, regions: Sequence[Region], tiles: torch.Tensor,
            done: torch.cuda.Event | None) -> None:
    """Write each tile's probabilities into its region of the volume (tiles past the volume's end are cropped)."""
    if done is not None:
        done.synchronize()
    for region, tile in zip(regions, tiles.numpy(), strict=True):
        crop = tuple(slice(0, r.stop - r.start) for r in region)
        probabilities[(slice(None), *region)] = tile[(slice(None), *crop)]


def _check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot run: float16 needs CUDA, bfloat16 on CUDA a GPU that supports it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "float16" and device.type != "cuda":
        raise ValueError("float16 runs on CUDA only; on the CPU use bfloat16 or float32")
    if (precision == "bfloat16" and device.type == "cuda"
            and not torch.cuda.is_bf16_supported(including_emulation=False)):
        raise ValueError(f"bfloat16 is not supported by this GPU ({torch.cuda.get_device_name(device)}: it needs "
                         "compute capability 8.0 or newer); use float16 or float32")


@contextlib.contextmanager
def _float32_means_float32(precision: str) -> Iterator[None]:
    """Without TF32 convolutions for ``float32`` (cuDNN uses TF32 by default on Ampere and newer, whose 10-bit
    mantissa breaks dense = patch-wise to 1e-4); reduced precisions are asked for by name."""
    allowed = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = precision != "float32"
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = allowed


@torch.inference_mode()
def predict_volume(
    model: nn.Module,
    image: np.ndarray,
    brain_mask: np.ndarray,
    device: torch.device | None = None,
    tile_output: int | None = None,
    batch_size: int = 2,
    *,
    precision: str = "float32",
    memory_budget_mb: float | None = None,
    progress: bool = False,
    inference_copy: bool = True,
) -> np.ndarray:
    """Class probabilities ``(n_classes, x, y, z)`` float32 for ``image`` ``(c, x, y, z)``.

    ``tile_output``: output side of 3D tiles (rounded down to the model's grid),
    or None to choose the largest that fits the memory (:func:`choose_tile_output`;
    ``memory_budget_mb`` on the CPU). ``batch_size``: tiles (3D) or slices (2D)
    per forward pass. ``precision``: autocast float16 (CUDA) or bfloat16.
    ``progress``: a progress bar over batches on stderr. The model is moved to
    ``device`` and put in eval mode; DeepMedics run as their inference-time copy
    (:func:`~lesionseg.inference.deepmedic_inference.inference_network`: same
    outputs, faster), or as they are with ``inference_copy=False``. Outside
    ``brain_mask`` the probabilities are those of class 0 (background) = 1.
    """
    device = device or default_device()
    _check_precision(precision, device)
    model = model.to(device).eval()
    if inference_copy:
        model = inference_network(model)
    if image.shape[0] != model.in_channels:
        raise ValueError(f"the image has {image.shape[0]} channels, the model takes {model.in_channels}")
    plan = plan_tiles(model, brain_mask, image.shape[0], device, tile_output, batch_size, memory_budget_mb)
    context = input_context(model)
    cuda = device.type == "cuda"
    side_stream = torch.cuda.Stream(device) if cuda else None
    probabilities = np.zeros((model.n_classes, *brain_mask.shape), dtype=np.float32)
    batches = [plan.regions[i:i + plan.batch_size] for i in range(0, len(plan.regions), plan.batch_size)]
    pending = None
    with _float32_means_float32(precision):
        for regions in tqdm(batches, desc="dense inference", unit="batch", disable=not progress, file=sys.stderr):
            inputs = _upload(_host_batch(image, regions, plan, context, pin=cuda), device, side_stream)
            outputs = _download(_forward(model, inputs, precision))
            # Stitching the previous batch now lets the host work while the device computes this one.
            if pending is not None:
                _stitch(probabilities, *pending)
            pending = (regions, *outputs)
        if pending is not None:
            _stitch(probabilities, *pending)
    probabilities[:, ~brain_mask] = 0.0
    probabilities[0, ~brain_mask] = 1.0
    return probabilities
