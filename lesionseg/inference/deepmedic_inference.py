"""An inference-time copy of a trained DeepMedic: the same outputs in eval mode, less work per voxel.

:func:`inference_network` builds it from a trained
:class:`~lesionseg.models.deepmedic.DeepMedic` or
:class:`~lesionseg.models.deepmedic.CascadedDeepMedic` (other models are used as
they are); the trained module, its parameters and its state dict are left
untouched. The copy computes what the eval-mode network computes, rearranged:

- Each eval-mode batch norm is folded into the convolution before it.
  DeepMedic's blocks are pre-activation (BN -> PReLU -> conv), so a BN
  normalises the previous convolution's output, and conv then BN is one affine
  map. Where that output is a residual sum, or is also added back later as a
  skip (which needs it un-normalised), the BN stays a separate per-channel
  affine step. Eval-mode dropout is the identity and is dropped.
- The image's channels are padded with zeros (and the first layer's weights
  with zero columns) to a multiple of :data:`CHANNEL_MULTIPLE`: a 4-channel
  first layer ran 4x slower in oneDNN than the same layer on 8 channels.
- Activations are kept in channels-last 3D layout (``torch.channels_last_3d``,
  NDHWC), the layout oneDNN's and cuDNN's fast convolutions use; in contiguous
  layout oneDNN ran these layers at half the rate.
- The first fully connected layer is linear in the concatenated features, so
  each low-resolution pathway's share of it is applied on that pathway's coarse
  grid and added to the normal pathway's share broadcast over each f^3 block:
  neither the upsampled features nor their concatenation are ever built.
- The fully connected layers run slab by slab along x (per-voxel layers), so
  their wide activations stay small whatever the tile.
- Activations are computed in place, chunk by chunk, except where a residual
  connection needs the raw output later; on the CPU the many small operations
  (activation chunks, FC slabs) run as one single-threaded stream per thread.

Measured (2 threads, a BraTS-sized brain, paper DeepMedic): 94 s as trained,
25 s as this copy; ``bench/inference.py`` prints the rate against the machine's
best matrix product.

Kamnitsas et al. 2017 (Medical Image Analysis 36:61-78) for the network.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn
from torch.nn import functional as F

from lesionseg.models.deepmedic import CascadedDeepMedic, DeepMedic, Pathway, center_crop

# Channel counts the convolution kernels vectorise over (oneDNN's blocks of 8 float32; cuDNN's tensor cores want 8).
CHANNEL_MULTIPLE = 8
# Voxels per slab of the fully connected layers: their 150-map (float32) activations stay near 20 MB.
HEAD_SLAB_VOXELS = 32768
# Voxels per chunk of an activation computed in place (about 1 MB of 30-50 float32 maps: in cache).
ACTIVATION_CHUNK_VOXELS = 8192
# Elsewhere (CUDA) few large chunks: each is a kernel launch, and its temporaries stay near 50 MB.
DEVICE_CHUNK_VOXELS = 2**18


def batch_norm_affine(norm: nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` per channel with ``norm(x) = scale * x + shift`` in eval mode."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return scale, norm.bias - scale * norm.running_mean


def _own(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """A copy of ``tensor`` that shares no memory (nor autograd history) with the trained module."""
    return None if tensor is None else tensor.detach().clone()


def _per_channel(values: torch.Tensor) -> torch.Tensor:
    """``(C,)`` values shaped to broadcast over ``(B, C, X, Y, Z)``."""
    return values.reshape(-1, 1, 1, 1)


def padded_channels(channels: int) -> int:
    """``channels`` rounded up to :data:`CHANNEL_MULTIPLE`."""
    return math.ceil(channels / CHANNEL_MULTIPLE) * CHANNEL_MULTIPLE


def to_padded_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, C, X, Y, Z)`` in channels-last layout with zero channels appended to :func:`padded_channels`."""
    padded = torch.empty((x.shape[0], padded_channels(x.shape[1]), *x.shape[2:]), dtype=x.dtype, device=x.device,
                         memory_format=torch.channels_last_3d)
    padded[:, :x.shape[1]] = x
    padded[:, x.shape[1]:] = 0
    return padded


class InferenceLayer(nn.Module):
    """One unpadded 3x3x3 convolution whose output then goes through ``PReLU(scale * y + shift)``.

    With the batch norm folded in, ``scale`` and ``shift`` are None: the convolution's
    output is already normalised.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, prelu: torch.Tensor,
                 affine: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        super().__init__()
        self.register_buffer("weight", _own(weight).contiguous(memory_format=torch.channels_last_3d))
        self.register_buffer("bias", _own(bias))
        self.register_buffer("prelu", _own(prelu))
        self.register_buffer("scale", None if affine is None else _own(_per_channel(affine[0])))
        self.register_buffer("shift", None if affine is None else _own(_per_channel(affine[1])))

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, self.weight, self.bias)

    def activate(self, y: torch.Tensor, in_place: bool) -> torch.Tensor:
        """``PReLU(scale * y + shift)`` of ``y`` ``(B, C, X, Y, Z)``; written over ``y`` when ``in_place``.

        Chunk by chunk of voxels, so that an activation takes no memory beyond
        its own (as :func:`~lesionseg.inference.dense.estimate_memory` counts it
        on any device). On the CPU in cache-sized chunks and single-threaded
        streams (:func:`_on_streams`): a fresh 300 MB activation cost 0.15 s in
        first-touch page faults, its chunks in place 0.03 s.
        """
        y = y.contiguous(memory_format=torch.channels_last_3d)
        out = y if in_place else torch.empty_like(y)
        chunk = ACTIVATION_CHUNK_VOXELS if y.device.type == "cpu" else DEVICE_CHUNK_VOXELS
        scale, shift = (None, None) if self.scale is None else (self.scale.flatten(), self.shift.flatten())
        # PReLU takes one precision: the activations' (autocast's, when on), or float32 after the affine step.
        slope = self.prelu.to(y.dtype if scale is None else torch.promote_types(y.dtype, scale.dtype))

        def work(chunks: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
            for source, target in chunks:
                if scale is not None:
                    source = torch.addcmul(shift, source, scale)
                _prelu_rows(source, slope, target)

        _on_streams(work, list(zip(_voxel_rows(y).split(chunk), _voxel_rows(out).split(chunk), strict=True)),
                    y.device)
        return out


class InferencePathway(nn.Module):
    """A DeepMedic pathway with its batch norms folded; returns the activated features the head takes.

    ``norm`` and ``prelu`` are the head's batch norm and PReLU over this
    pathway's channels (the ones applied to its output).
    """

    def __init__(self, pathway: Pathway, norm: tuple[torch.Tensor, torch.Tensor], prelu: torch.Tensor) -> None:
        super().__init__()
        self.residual_layers = pathway.residual_layers
        self.shrink = pathway.shrink
        # Raw (un-normalised) outputs that a residual connection adds back two layers later.
        self.skip_sources = frozenset(number - 2 for number in self.residual_layers)
        blocks = list(pathway.layers)
        layers = []
        for number, block in enumerate(blocks, start=1):
            weight, bias = block.conv.weight, block.conv.bias
            if number == 1:
                weight = F.pad(weight, (0, 0, 0, 0, 0, 0, 0, padded_channels(weight.shape[1]) - weight.shape[1]))
            if number < len(blocks):
                next_norm, next_prelu = blocks[number].pre
                affine, slope = batch_norm_affine(next_norm), next_prelu.weight
            else:
                affine, slope = norm, prelu
            if number in self.residual_layers or number in self.skip_sources:
                layers.append(InferenceLayer(weight, bias, slope, affine))
            else:
                scale, shift = affine
                layers.append(InferenceLayer(weight * _per_channel(scale)[..., None], scale * bias + shift,
                                             slope, None))
        self.layers = nn.ModuleList(layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """The features of ``image`` ``(B, C, X, Y, Z)``, the pathway's input region."""
        raw = {0: image}
        x = to_padded_channels_last(image)
        for number, layer in enumerate(self.layers, start=1):
            y = layer.convolve(x)
            del x  # each step holds two activations at most: its input and its output
            if number in self.residual_layers:
                skip = center_crop(raw.pop(number - 2), y.shape[2:])
                shared = min(skip.shape[1], y.shape[1])  # extra maps of either side get zeros, as DeepMedic
                y[:, :shared] += skip[:, :shared]
            if number in self.skip_sources:
                raw[number] = y
            x = layer.activate(y, in_place=number not in self.skip_sources)
            del y
        return x


class InferenceDeepMedic(nn.Module):
    """The inference-time copy of a :class:`DeepMedic` (see the module's docstring); same sizes and outputs."""

    dims = 3

    def __init__(self, model: DeepMedic) -> None:
        super().__init__()
        self.in_channels, self.n_classes = model.in_channels, model.n_classes
        self.subsample_factors = model.subsample_factors
        self.margin, self.grid, self.receptive_field = model.margin, model.grid, model.receptive_field
        head = list(model.fully_connected)
        norms = [batch_norm_affine(m) for m in head if isinstance(m, nn.BatchNorm3d)]
        prelus = [m.weight for m in head if isinstance(m, nn.PReLU)]
        convs = [m for m in head if isinstance(m, nn.Conv3d)] + [model.classifier]
        # The first batch norm and PReLU act on the concatenated pathway outputs: each pathway takes its channels.
        pathways = [model.normal, *model.low_res]
        bounds = list(itertools.accumulate((p.out_maps for p in pathways), initial=0))
        channels = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        scale, shift = norms[0]
        self.normal, *low_res = (InferencePathway(p, (scale[c], shift[c]), prelus[0][c])
                                 for p, c in zip(pathways, channels, strict=True))
        self.low_res = nn.ModuleList(low_res)
        # The fully connected layers as matrices (out, in), each with the batch norm after it folded in.
        matrices, biases = [], []
        for conv, norm in zip(convs, [*norms[1:], None], strict=True):
            matrix, bias = conv.weight.flatten(1), conv.bias
            if norm is not None:
                matrix, bias = matrix * norm[0][:, None], norm[0] * bias + norm[1]
            matrices.append(matrix)
            biases.append(bias)
        self.register_buffer("first_normal", _own(matrices[0][:, channels[0]]))
        for index, c in enumerate(channels[1:]):
            self.register_buffer(f"first_low_res_{index}", _own(matrices[0][:, c]))
        self.register_buffer("first_bias", _own(biases[0]))
        self.n_later = len(matrices) - 1
        for index, (matrix, bias) in enumerate(zip(matrices[1:], biases[1:], strict=True)):
            self.register_buffer(f"matrix_{index}", _own(matrix))
            self.register_buffer(f"bias_{index}", _own(bias))
        for index, slope in enumerate(prelus[1:]):
            self.register_buffer(f"prelu_{index}", _own(slope))

    def output_size(self, input_size: int) -> int:
        return input_size - 2 * self.margin

    def input_size(self, output_size: int) -> int:
        return output_size + 2 * self.margin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_shape = [self.output_size(s) for s in x.shape[2:]]
        if min(out_shape) < 1:
            raise ValueError(f"input {tuple(x.shape[2:])} is not larger than twice the margin {self.margin}")
        m = self.margin
        coarse = []
        for index, (pathway, f) in enumerate(zip(self.low_res, self.subsample_factors, strict=True)):
            context = f * (pathway.shrink // 2)
            region = tuple(slice(m - context, m + f * math.ceil(o / f) + context) for o in out_shape)
            features = pathway(F.avg_pool3d(x[(slice(None), slice(None), *region)], kernel_size=f, stride=f))
            coarse.append(F.linear(features.permute(0, 2, 3, 4, 1), getattr(self, f"first_low_res_{index}")))
        shrink = self.normal.shrink // 2
        normal = self.normal(x[(slice(None), slice(None), *(slice(m - shrink, m + o + shrink) for o in out_shape))])
        return self._head(normal, coarse)[(slice(None), slice(None), *(slice(0, o) for o in out_shape))]

    def _head(self, normal: torch.Tensor, coarse: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits ``(B, K, *P)`` (channels-last) of the fully connected layers, ``P`` the output sides rounded up
        to the grid.

        ``normal``: the normal pathway's features ``(B, C, X, Y, Z)`` (channels-last);
        ``coarse``: each low-resolution pathway's share of the first fully connected
        layer on its coarse grid, ``(B, Xf, Yf, Zf, out)``. Slab by slab along x; on
        the CPU the slabs are shared out to threads (:func:`_in_threads`).
        """
        grid = self.grid
        sides = [math.ceil(s / grid) * grid for s in normal.shape[2:]]
        voxels = normal.permute(0, 2, 3, 4, 1)  # (B, X, Y, Z, C): one row of channels per voxel, contiguous
        if sides != list(voxels.shape[1:4]):  # only for boxes off the grid: dense tiles are on it
            voxels = F.pad(voxels, [0, 0, *(p for s, n in zip(sides[::-1], voxels.shape[3:0:-1], strict=True)
                                            for p in (0, s - n))])
        logits = voxels.new_empty((voxels.shape[0], *sides, self.n_classes))
        step = grid * max(1, HEAD_SLAB_VOXELS // (grid * sides[1] * sides[2]))
        slabs = list(itertools.product(range(voxels.shape[0]), range(0, sides[0], step)))
        _on_streams(functools.partial(self._head_slabs, voxels, coarse, logits, step), slabs, voxels.device)
        return logits.permute(0, 4, 1, 2, 3)

    def _head_slabs(self, voxels: torch.Tensor, coarse: Sequence[torch.Tensor], logits: torch.Tensor, step: int,
                    slabs: Sequence[tuple[int, int]]) -> None:
        """Write into ``logits`` ``(B, *P, K)`` those of the slabs ``(item, first x)`` of ``step`` x-planes.

        Through buffers made once: fresh memory costs a page fault per 4 KB on first touch.
        """
        # In the activations' precision (autocast's, when on), as the out= products below need.
        dtype = voxels.dtype
        first_matrix, first_bias = self.first_normal.to(dtype), self.first_bias.to(dtype)
        layers = [(getattr(self, f"prelu_{i}").to(dtype), getattr(self, f"matrix_{i}").to(dtype),
                   getattr(self, f"bias_{i}").to(dtype)) for i in range(self.n_later)]
        plane = voxels.shape[2] * voxels.shape[3]
        widths = [first_matrix.shape[0], *(matrix.shape[0] for _, matrix, _ in layers[:-1])]
        buffers = [voxels.new_empty((step * plane, width)) for width in widths]
        for item, start in slabs:
            stop = min(start + step, voxels.shape[1])
            slab = voxels[item, start:stop]
            rows = slab.shape[0] * plane
            hidden = torch.addmm(first_bias, slab.reshape(rows, -1), first_matrix.T, out=buffers[0][:rows])
            for share, f in zip(coarse, self.subsample_factors, strict=True):
                blocks = share[item, start // f:stop // f]
                _add_repeated(hidden.view(*slab.shape[:3], -1)[:f * blocks.shape[0], :f * blocks.shape[1],
                                                               :f * blocks.shape[2]], blocks, f)
            for number, (slope, matrix, bias) in enumerate(layers, start=1):
                _prelu_rows(hidden, slope, hidden)
                out = logits[item, start:stop].view(rows, -1) if number == len(layers) else buffers[number][:rows]
                hidden = torch.addmm(bias, hidden, matrix.T, out=out)


def _voxel_rows(x: torch.Tensor) -> torch.Tensor:
    """The channels-last ``x`` ``(B, C, X, Y, Z)`` as rows ``(voxels, C)``, a view."""
    return x.permute(0, 2, 3, 4, 1).view(-1, x.shape[1])


def _on_streams(work: Callable[[Sequence], None], items: Sequence, device: torch.device) -> None:
    """``work(items)``; on the CPU the items are dealt out to one single-threaded stream per thread
    (:func:`_in_threads`)."""
    workers = min(len(items), torch.get_num_threads()) if device.type == "cpu" else 1
    if workers > 1:
        _in_threads(work, [items[i::workers] for i in range(workers)])
    else:
        work(items)


def _in_threads(work: Callable[[Sequence], None], parts: Sequence[Sequence]) -> None:
    """``work(part)`` for every part at once, each in a thread of its own whose operations run single-threaded.

    For many small operations (slabs of the fully connected layers, chunks of activations): a parallel
    operation waits for all its threads at its end, and with other processes on
    the cores those waits cost more than the arithmetic (measured on 2 busy
    cores: the head's operations ran 1.6x faster as 2 single-threaded streams
    than on 2 threads each). Grad and inference mode are per thread: each thread
    takes the caller's.
    """
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def run(part: Sequence) -> None:
        torch.set_num_threads(1)  # this thread's own setting: OpenMP's and MKL's thread counts are per thread
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            work(part)

    with ThreadPoolExecutor(len(parts)) as pool:
        list(pool.map(run, parts))


def _prelu_rows(source: torch.Tensor, slope: torch.Tensor, target: torch.Tensor) -> None:
    """PReLU of rows ``(N, C)`` (channels last) written into ``target`` (``source`` itself too)."""
    target.copy_(F.prelu(source[..., None], slope)[..., 0])  # seen as (N, C, 1): PReLU's channels are dim 1


def _add_repeated(fine: torch.Tensor, coarse: torch.Tensor, factor: int) -> None:
    """``fine[x, y, z] += coarse[x // factor, y // factor, z // factor]`` in place, on ``(X, Y, Z, C)``
    (a view of f^3 blocks: the repeated coarse values are never built)."""
    blocks = fine.unflatten(0, (-1, factor)).unflatten(2, (-1, factor)).unflatten(4, (-1, factor))
    blocks += coarse[:, None, :, None, :, None]


class InferenceCascade(nn.Module):
    """The inference-time copy of a :class:`CascadedDeepMedic`: both networks' copies, the same cascade."""

    dims = 3

    def __init__(self, model: CascadedDeepMedic) -> None:
        super().__init__()
        self.first, self.second = InferenceDeepMedic(model.first), InferenceDeepMedic(model.second)
        self.in_channels, self.n_classes = model.in_channels, model.n_classes
        self.margin, self.grid, self.receptive_field = model.margin, model.grid, model.receptive_field

    def output_size(self, input_size: int) -> int:
        return input_size - 2 * self.margin

    def input_size(self, output_size: int) -> int:
        return output_size + 2 * self.margin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.softmax(self.first(x), dim=1)
        image = center_crop(x, probabilities.shape[2:])
        return self.second(torch.cat([image, probabilities], dim=1))


@torch.no_grad()
def inference_network(model: nn.Module) -> nn.Module:
    """The inference-time copy of an eval-mode DeepMedic or cascade of DeepMedics; other models themselves.

    The copy is on the model's device; the model is not changed.
    """
    if isinstance(model, CascadedDeepMedic):
        return InferenceCascade(model).eval()
    if isinstance(model, DeepMedic):
        return InferenceDeepMedic(model).eval()
    return model
