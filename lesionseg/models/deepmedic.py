"""DeepMedic (Kamnitsas et al. 2017, Medical Image Analysis 36:61-78) in PyTorch.

A 3D multi-scale CNN: a normal-resolution pathway of eight unpadded 3x3x3
convolutions (30, 30, 40, 40, 40, 40, 50, 50 maps, receptive field 17^3) and one
or more low-resolution pathways of the same shape on the input subsampled by a
factor (3 in the paper: 51^3 of context); their features are concatenated and
classified by two fully connected layers (150 maps, as 1x1x1 convolutions, with
dropout 0.5). Batch normalisation, PReLU, He initialisation; optional residual
connections at layers 4, 6 and 8 (the later DeepMedic).

Each low-resolution pathway averages the input over f x f x f blocks, applies
its convolutions on that coarse grid and repeats its outputs back f times per
axis. The coarse grid is anchored at the first output voxel, so a dense tiling
whose tiles start at multiples of f (the grid step, :attr:`DeepMedic.grid`) gives
exactly what the network computes on any single block: dense inference equals
patch-wise inference.

Sizes: the model takes one tensor ``(B, C, S, S, S)`` holding the output region
plus a context margin on every side (:attr:`DeepMedic.margin`: 26 voxels with a
factor-3 pathway); each pathway takes what it needs. A 25^3 normal-pathway
segment gives 9^3 outputs (the paper's training segments), 45^3 gives 29^3 (its
inference segments). The receptive field of a voxel is 17^3 in the normal
pathway and 51^3 in the factor-3 pathway, as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

PAPER_MAPS = (30, 30, 40, 40, 40, 40, 50, 50)
PAPER_FC = (150, 150)


def center_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The central ``size`` of the spatial dims of ``x`` ``(B, C, *spatial)``."""
    slices = []
    for have, want in zip(x.shape[2:], size, strict=True):
        if want > have or (have - want) % 2:
            raise ValueError(f"cannot crop {tuple(x.shape[2:])} centrally to {tuple(size)}")
        start = (have - want) // 2
        slices.append(slice(start, start + want))
    return x[(slice(None), slice(None), *slices)]


class ConvBlock(nn.Module):
    """Batch norm -> PReLU -> unpadded 3x3x3 convolution (pre-activation, as DeepMedic's layers)."""

    def __init__(self, in_maps: int, out_maps: int, normalise_input: bool = True) -> None:
        super().__init__()
        # The first layer sees the normalised image itself: no BN or activation before it.
        self.pre = nn.Sequential(nn.BatchNorm3d(in_maps), nn.PReLU(in_maps)) if normalise_input else nn.Identity()
        self.conv = nn.Conv3d(in_maps, out_maps, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pre(x))


class Pathway(nn.Module):
    """Eight (by default) unpadded 3x3x3 conv layers, optionally with residual connections.

    Each layer shrinks every side by 2 voxels.
    """

    def __init__(self, in_channels: int, maps: Sequence[int], residual_layers: Sequence[int] = ()) -> None:
        super().__init__()
        self.residual_layers = frozenset(residual_layers)
        widths = (in_channels, *maps)
        self.layers = nn.ModuleList(
            ConvBlock(widths[i], widths[i + 1], normalise_input=i > 0) for i in range(len(maps))
        )
        for layer in self.residual_layers:
            if not 2 <= layer <= len(maps):
                raise ValueError(f"residual connection at layer {layer}: layers are numbered 2..{len(maps)}")

    @property
    def out_maps(self) -> int:
        return self.layers[-1].conv.out_channels

    @property
    def shrink(self) -> int:
        """Voxels lost per side length."""
        return 2 * len(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        previous = None
        for number, layer in enumerate(self.layers, start=1):
            out = layer(x)
            if number in self.residual_layers:
                # Add the output of two layers back, cropped; extra maps get zeros (as DeepMedic).
                skip = center_crop(previous, out.shape[2:])
                out = out + F.pad(skip, (0, 0, 0, 0, 0, 0, 0, out.shape[1] - skip.shape[1]))
            previous, x = x, out
        return x


class DeepMedic(nn.Module):
    """The DeepMedic network; outputs class logits ``(B, n_classes, O, O, O)``."""

    dims = 3

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        maps: Sequence[int] = PAPER_MAPS,
        subsample_factors: Sequence[int] = (3,),
        low_res_maps: Sequence[int] | None = None,
        fc_maps: Sequence[int] = PAPER_FC,
        dropout: float = 0.5,
        residual_layers: Sequence[int] = (),
    ) -> None:
        super().__init__()
        for factor in subsample_factors:
            if factor < 2 or factor % 2 == 0:
                raise ValueError(f"subsample factor {factor}: use odd factors >= 3 (centred subsampling)")
        self.in_channels, self.n_classes = in_channels, n_classes
        self.subsample_factors = tuple(subsample_factors)
        self.normal = Pathway(in_channels, maps, residual_layers)
        self.low_res = nn.ModuleList(
            Pathway(in_channels, low_res_maps or maps, residual_layers) for _ in subsample_factors
        )
        widths = (self.normal.out_maps + sum(p.out_maps for p in self.low_res), *fc_maps)
        head: list[nn.Module] = []
        for i in range(len(fc_maps)):
            head += [nn.BatchNorm3d(widths[i]), nn.PReLU(widths[i]), nn.Dropout(dropout),
                     nn.Conv3d(widths[i], widths[i + 1], kernel_size=1)]
        head += [nn.BatchNorm3d(widths[-1]), nn.PReLU(widths[-1]), nn.Dropout(dropout)]
        self.fully_connected = nn.Sequential(*head)
        self.classifier = nn.Conv3d(widths[-1], n_classes, kernel_size=1)
        self._he_init()

    def _he_init(self) -> None:
        # He et al.: N(0, sqrt(2 / fan_in)), as the paper.
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    @property
    def output_layer(self) -> nn.Module:
        """The classification layer (the only one phase-2 training updates)."""
        return self.classifier

    @property
    def receptive_field(self) -> int:
        """Side of the cube of input voxels the output voxel at a block centre depends on (51 for factor 3)."""
        return max([self.normal.shrink + 1, *(f * (p.shrink + 1) for p, f in self._low_res_pairs())])

    @property
    def margin(self) -> int:
        """Context voxels needed on each side of the output region (any voxel of a coarse block)."""
        return max([self.normal.shrink // 2, *(f * (p.shrink // 2) + f - 1 for p, f in self._low_res_pairs())])

    @property
    def grid(self) -> int:
        """Step of the coarse grids: dense tiles must start at multiples of it to agree with each other."""
        return math.lcm(1, *self.subsample_factors)

    def _low_res_pairs(self) -> list[tuple[Pathway, int]]:
        return list(zip(self.low_res, self.subsample_factors, strict=True))

    def output_size(self, input_size: int) -> int:
        """Output side for an input side (output region plus margins)."""
        return input_size - 2 * self.margin

    def input_size(self, output_size: int) -> int:
        """Input side needed for an output side."""
        return output_size + 2 * self.margin

    def segment_output_size(self, segment_size: int) -> int:
        """Output side for a normal-pathway segment side, as the paper counts (25 -> 9, 45 -> 29)."""
        return segment_size - self.normal.shrink

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_shape = [self.output_size(s) for s in x.shape[2:]]
        if min(out_shape) < 1:
            raise ValueError(f"input {tuple(x.shape[2:])} is not larger than twice the margin {self.margin}")
        m, shrink = self.margin, self.normal.shrink // 2
        normal_region = tuple(slice(m - shrink, m + o + shrink) for o in out_shape)
        features = [self.normal(x[(slice(None), slice(None), *normal_region)])]
        for pathway, f in self._low_res_pairs():
            context = f * (pathway.shrink // 2)
            blocks = [math.ceil(o / f) for o in out_shape]
            region = tuple(slice(m - context, m + f * b + context) for b in blocks)
            coarse = pathway(F.avg_pool3d(x[(slice(None), slice(None), *region)], kernel_size=f, stride=f))
            for axis in range(2, 5):
                coarse = coarse.repeat_interleave(f, dim=axis)
            features.append(coarse[(slice(None), slice(None), *(slice(0, o) for o in out_shape))])
        return self.classifier(self.fully_connected(torch.cat(features, dim=1)))


class CascadedDeepMedic(nn.Module):
    """Two DeepMedics in a cascade: the first's class probabilities are extra input channels of the second.

    Beyond both papers (Havaei's InputCascade idea applied to DeepMedic). The first
    network is frozen while the second trains. Takes ``(B, C, S, S, S)`` with
    ``S = output + 2 * margin``.
    """

    dims = 3

    def __init__(self, first: DeepMedic, second: DeepMedic) -> None:
        super().__init__()
        if second.in_channels != first.in_channels + first.n_classes:
            raise ValueError(
                f"the second network needs {first.in_channels} + {first.n_classes} input channels, "
                f"has {second.in_channels}"
            )
        self.first, self.second = first, second
        self.in_channels, self.n_classes = first.in_channels, second.n_classes
        for parameter in self.first.parameters():
            parameter.requires_grad_(False)
        self.first.eval()

    def train(self, mode: bool = True) -> CascadedDeepMedic:
        super().train(mode)
        self.first.eval()  # frozen: batch-norm statistics and dropout stay as trained
        return self

    @property
    def output_layer(self) -> nn.Module:
        return self.second.output_layer

    @property
    def margin(self) -> int:
        return self.first.margin + self.second.margin

    @property
    def grid(self) -> int:
        return math.lcm(self.first.grid, self.second.grid)

    @property
    def receptive_field(self) -> int:
        return self.first.receptive_field + self.second.receptive_field - 1

    def output_size(self, input_size: int) -> int:
        return input_size - 2 * self.margin

    def input_size(self, output_size: int) -> int:
        return output_size + 2 * self.margin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            probabilities = torch.softmax(self.first(x), dim=1)
        image = center_crop(x, probabilities.shape[2:])
        return self.second(torch.cat([image, probabilities], dim=1))
