"""Havaei et al. 2017 (Medical Image Analysis 35:18-31) 2D CNNs in PyTorch, fully convolutional.

TwoPathCNN, on a ``C x 33 x 33`` patch (BRATS 2013: C = 4 modalities, 5 classes):

- local path: 7x7 conv -> 64 maxout maps, 4x4 max-pool -> 64x24x24;
  3x3 conv -> 64 maxout maps, 2x2 max-pool -> 64x21x21;
- global path: 13x13 conv -> 160 maxout maps -> 160x21x21;
- both concatenated (224x21x21), dropout, then a 21x21 output conv -> ``n_classes``
  logits (softmax is left to callers).

Maxout with group size K: a conv makes ``maps * K`` channels and each group of K
consecutive channels is reduced to its maximum. All convs are unpadded and all
pools have stride 1, so the network is translation-equivariant: an input side S
gives ``S - 32`` outputs, each equal to the network run on its own 33x33 patch,
and a whole axial slice is segmented in one pass.

The cascades feed a frozen, already trained TwoPathCNN's class probabilities
(softmax of its logits) into a second TwoPathCNN at one of three depths:

============== ======================= ================= ===========
model          join point              receptive field   output side
============== ======================= ================= ===========
TwoPathCNN     --                      33                S - 32
InputCascade   input (C + 5 channels)  65 (5x33x33 map)  S - 64
LocalCascade   after local conv7+pool  56 (5x24x24 map)  S - 55
MFCascade      before the output conv  53 (5x21x21 map)  S - 52
============== ======================= ================= ===========

A cascade takes one tensor ``(B, C, S, S)`` (S >= receptive field; H and W may
differ), runs the first CNN on all of it and the second on its centre crop. The
crop keeps the first CNN's map aligned with the second CNN's map at the join
point: exactly for the input and MF cascades (odd windows), to within half a
pixel for the local cascade, whose 7x7 conv + 4x4 pool window is 10 pixels wide
(even), so no input pixel is its centre. ``output_offset`` is the input pixel
that output index 0 labels (16, 32, 27, 26), i.e. pad a slice by
``output_offset`` before and ``receptive_field - 1 - output_offset`` after to
get one prediction per pixel.

Parameter counts as the paper's table (``paper_parameter_count``): conv weights
without biases, one filter per maxout unit, the cascades' second CNN only:
651,488 / 802,368 / 654,368 / 662,513.

Dropout: the paper trains with dropout; here it is applied to the output
conv's input, at rate 0.2 by default (a moderate choice, configurable).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Self

import torch
from torch import nn

PAPER_LOCAL_MAPS = (64, 64)
PAPER_GLOBAL_MAPS = 160
PAPER_LOCAL_KERNELS = (7, 3)
PAPER_GLOBAL_KERNEL = 13
PAPER_LOCAL_POOLS = (4, 2)
PAPER_OUTPUT_KERNEL = 21
PAPER_MAXOUT = 2
PAPER_INIT_RANGE = 0.005  # weights ~ U(-0.005, 0.005)


class Maxout(nn.Module):
    """Maxout over channels: ``(B, maps * K, H, W) -> (B, maps, H, W)``, max of each K consecutive channels."""

    def __init__(self, group_size: int) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"maxout group size must be >= 1, got {group_size}")
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] % self.group_size:
            raise ValueError(f"{x.shape[1]} channels do not split into maxout groups of {self.group_size}")
        return x.unflatten(1, (x.shape[1] // self.group_size, self.group_size)).amax(dim=2)


class MaxoutConv2d(nn.Module):
    """Unpadded conv making ``maps * group_size`` channels, then ``Maxout(group_size)`` -> ``maps`` channels.

    Shrinks each side by ``kernel_size - 1``.
    """

    def __init__(self, in_channels: int, maps: int, kernel_size: int, group_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, maps * group_size, kernel_size)
        self.maxout = Maxout(group_size)

    @property
    def paper_weight_count(self) -> int:
        """Weights as the paper counts them: one filter per maxout unit, no bias."""
        return self.conv.weight.numel() // self.maxout.group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxout(self.conv(x))


def _init_paper_weights(module: nn.Module) -> None:
    """Conv weights ~ U(-0.005, 0.005) and zero biases, as the paper."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.uniform_(conv.weight, -PAPER_INIT_RANGE, PAPER_INIT_RANGE)
            nn.init.zeros_(conv.bias)


def _check_fits(input_shape: Sequence[int], receptive_field: int) -> None:
    """Reject inputs with a side smaller than the receptive field (no output pixel)."""
    if min(input_shape) < receptive_field:
        raise ValueError(f"input {tuple(input_shape)} is smaller than the receptive field {receptive_field}")


def _set_log_frequency_bias(layer: nn.Conv2d, frequencies: Sequence[float] | torch.Tensor) -> None:
    """Biases of ``layer`` = log of ``frequencies`` normalised to sum to 1 (softmax is unchanged by the scale)."""
    frequencies = torch.as_tensor(frequencies, dtype=torch.float64)
    if frequencies.shape != layer.bias.shape or not bool((frequencies > 0).all()):
        raise ValueError(f"need {layer.bias.numel()} positive label frequencies, got {frequencies.tolist()}")
    with torch.no_grad():
        layer.bias.copy_(torch.log(frequencies / frequencies.sum()))


class TwoPathCNN(nn.Module):
    """The two-pathway CNN: ``(B, in_channels, H, W) -> (B, n_classes, H - 32, W - 32)`` logits (paper sizes).

    ``extra_local_channels`` / ``extra_output_channels`` widen the input of the
    3x3 local conv / of the output conv for maps a cascade concatenates there
    (passed to ``forward`` as ``local_extra`` / ``output_extra``).
    """

    dims = 2

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        *,
        maxout: int = PAPER_MAXOUT,
        local_maps: tuple[int, int] = PAPER_LOCAL_MAPS,
        global_maps: int = PAPER_GLOBAL_MAPS,
        local_kernels: tuple[int, int] = PAPER_LOCAL_KERNELS,
        global_kernel: int = PAPER_GLOBAL_KERNEL,
        local_pools: tuple[int, int] = PAPER_LOCAL_POOLS,
        output_kernel: int = PAPER_OUTPUT_KERNEL,
        dropout: float = 0.2,
        extra_local_channels: int = 0,
        extra_output_channels: int = 0,
    ) -> None:
        super().__init__()
        local_window = local_kernels[0] + local_pools[0] + local_kernels[1] + local_pools[1] - 3
        if local_window != global_kernel:
            # Both paths must shrink the input equally for their maps to be concatenated.
            raise ValueError(
                f"the local path sees {local_window}x{local_window} pixels but the global kernel is "
                f"{global_kernel}x{global_kernel}: they must be equal"
            )
        self.in_channels, self.n_classes = in_channels, n_classes
        self.local_first = nn.Sequential(
            MaxoutConv2d(in_channels, local_maps[0], local_kernels[0], maxout),
            nn.MaxPool2d(local_pools[0], stride=1),
        )
        self.local_second = nn.Sequential(
            MaxoutConv2d(local_maps[0] + extra_local_channels, local_maps[1], local_kernels[1], maxout),
            nn.MaxPool2d(local_pools[1], stride=1),
        )
        self.global_path = MaxoutConv2d(in_channels, global_maps, global_kernel, maxout)
        self.dropout = nn.Dropout(dropout)
        self.output_conv = nn.Conv2d(local_maps[1] + global_maps + extra_output_channels, n_classes, output_kernel)
        _init_paper_weights(self)

    @property
    def output_layer(self) -> nn.Conv2d:
        """The output conv (the only layer the paper's second training phase updates)."""
        return self.output_conv

    @property
    def local_first_receptive_field(self) -> int:
        """Side of the input window behind one pixel of the local path's first layer (7 + 4 - 1 = 10)."""
        conv = self.local_first[0].conv.kernel_size[0]
        pool = self.local_first[1].kernel_size
        return conv + pool - 1

    @property
    def features_receptive_field(self) -> int:
        """Side of the input window behind one pixel of the output conv's input (13)."""
        return self.global_path.conv.kernel_size[0]

    @property
    def receptive_field(self) -> int:
        """Side of the input patch one output pixel depends on (33)."""
        return self.features_receptive_field + self.output_conv.kernel_size[0] - 1

    @property
    def output_offset(self) -> int:
        """Index, within the receptive field, of the input pixel an output pixel labels (16: the centre)."""
        return (self.receptive_field - 1) // 2

    def output_size(self, input_size: int) -> int:
        """Output side for an input side (``input_size - 32``)."""
        return input_size - self.receptive_field + 1

    def input_size(self, output_size: int) -> int:
        """Input side needed for an output side (``output_size + 32``)."""
        return output_size + self.receptive_field - 1

    def init_output_bias(self, frequencies: Sequence[float] | torch.Tensor) -> None:
        """Set the output biases to the log label frequencies (normalised to sum to 1), as the paper."""
        _set_log_frequency_bias(self.output_conv, frequencies)

    def forward(
        self,
        x: torch.Tensor,
        local_extra: torch.Tensor | None = None,
        output_extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``(B, n_classes, H - 32, W - 32)`` for ``x`` ``(B, in_channels, H, W)``.

        ``local_extra`` ``(B, extra_local_channels, H - 9, W - 9)`` is concatenated
        after the local path's first layer, ``output_extra``
        ``(B, extra_output_channels, H - 12, W - 12)`` to the output conv's input.
        """
        _check_fits(x.shape[2:], self.receptive_field)
        local = self.local_first(x)
        if local_extra is not None:
            local = torch.cat([local, local_extra], dim=1)
        features = [self.local_second(local), self.global_path(x)]
        if output_extra is not None:
            features.append(output_extra)
        return self.output_conv(self.dropout(torch.cat(features, dim=1)))


class CascadeCNN(nn.Module, ABC):
    """Two TwoPathCNNs in cascade: the frozen ``first``'s class probabilities feed the trainable ``second``.

    ``first`` is an already trained TwoPathCNN with ``in_channels`` input channels;
    when omitted, a new one with the given sizes is created (train it first and
    load its weights). Its parameters (those of the module passed in) are frozen,
    and it stays in eval mode even when the cascade is ``.train()``-ed. The
    keyword sizes build the second CNN (as for ``TwoPathCNN``).

    Takes ``(B, in_channels, H, W)`` with H, W >= ``receptive_field``; returns
    logits ``(B, n_classes, output_size(H), output_size(W))``.
    """

    dims = 2

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        first: TwoPathCNN | None = None,
        *,
        maxout: int = PAPER_MAXOUT,
        local_maps: tuple[int, int] = PAPER_LOCAL_MAPS,
        global_maps: int = PAPER_GLOBAL_MAPS,
        local_kernels: tuple[int, int] = PAPER_LOCAL_KERNELS,
        global_kernel: int = PAPER_GLOBAL_KERNEL,
        local_pools: tuple[int, int] = PAPER_LOCAL_POOLS,
        output_kernel: int = PAPER_OUTPUT_KERNEL,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        sizes: dict[str, Any] = dict(
            maxout=maxout, local_maps=local_maps, global_maps=global_maps, local_kernels=local_kernels,
            global_kernel=global_kernel, local_pools=local_pools, output_kernel=output_kernel, dropout=dropout,
        )
        if first is None:
            first = TwoPathCNN(in_channels, n_classes, **sizes)
        elif first.in_channels != in_channels:
            raise ValueError(f"the first CNN takes {first.in_channels} channels, the cascade {in_channels}")
        self.in_channels, self.n_classes = in_channels, n_classes
        self.first = first
        self.first.requires_grad_(False)
        self.first.eval()
        self.second = self._build_second(first.n_classes, sizes)

    @abstractmethod
    def _build_second(self, first_classes: int, sizes: dict[str, Any]) -> TwoPathCNN:
        """The second CNN, with room for the first's ``first_classes`` probability maps at the join point."""

    @property
    @abstractmethod
    def _join_receptive_field(self) -> int:
        """Side of the second CNN's input window behind one pixel of the map the probabilities join."""

    @abstractmethod
    def _second_logits(self, image: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        """The second CNN on its (cropped) input with the first's probabilities joined in."""

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        self.first.eval()  # frozen: its dropout stays off
        return self

    @property
    def output_layer(self) -> nn.Conv2d:
        """The second CNN's output conv."""
        return self.second.output_layer

    @property
    def _crop(self) -> int:
        """Pixels per side length the second CNN's input is smaller than the cascade's."""
        return self.first.receptive_field - self._join_receptive_field

    @property
    def receptive_field(self) -> int:
        """Side of the input patch one output pixel depends on (65 / 56 / 53)."""
        return self._crop + self.second.receptive_field

    @property
    def output_offset(self) -> int:
        """Index, within the receptive field, of the input pixel an output pixel labels (32 / 27 / 26)."""
        return self._crop // 2 + self.second.output_offset

    def output_size(self, input_size: int) -> int:
        """Output side for an input side."""
        return input_size - self.receptive_field + 1

    def input_size(self, output_size: int) -> int:
        """Input side needed for an output side."""
        return output_size + self.receptive_field - 1

    def init_output_bias(self, frequencies: Sequence[float] | torch.Tensor) -> None:
        """Set the second CNN's output biases to the log label frequencies."""
        self.second.init_output_bias(frequencies)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_fits(x.shape[2:], self.receptive_field)
        with torch.no_grad():  # frozen: no activations kept for backward
            probabilities = torch.softmax(self.first(x), dim=1)
        before = self._crop // 2
        after = self._crop - before
        image = x[:, :, before : x.shape[2] - after, before : x.shape[3] - after]
        return self._second_logits(image, probabilities)


class InputCascadeCNN(CascadeCNN):
    """Probabilities join the second CNN's input: 65x65 -> first 5x33x33, second 9x33x33 -> 1x1."""

    def _build_second(self, first_classes: int, sizes: dict[str, Any]) -> TwoPathCNN:
        return TwoPathCNN(self.in_channels + first_classes, self.n_classes, **sizes)

    @property
    def _join_receptive_field(self) -> int:
        return 1

    def _second_logits(self, image: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        return self.second(torch.cat([image, probabilities], dim=1))


class LocalCascadeCNN(CascadeCNN):
    """Probabilities join after the local path's first layer: 56x56 -> first 5x24x24, 69 maps into the 3x3 conv."""

    def _build_second(self, first_classes: int, sizes: dict[str, Any]) -> TwoPathCNN:
        return TwoPathCNN(self.in_channels, self.n_classes, extra_local_channels=first_classes, **sizes)

    @property
    def _join_receptive_field(self) -> int:
        return self.second.local_first_receptive_field

    def _second_logits(self, image: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        return self.second(image, local_extra=probabilities)


class MFCascadeCNN(CascadeCNN):
    """Probabilities join right before the output conv: 53x53 -> first 5x21x21, 229 maps into the 21x21 conv."""

    def _build_second(self, first_classes: int, sizes: dict[str, Any]) -> TwoPathCNN:
        return TwoPathCNN(self.in_channels, self.n_classes, extra_output_channels=first_classes, **sizes)

    @property
    def _join_receptive_field(self) -> int:
        return self.second.features_receptive_field

    def _second_logits(self, image: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        return self.second(image, output_extra=probabilities)


def paper_parameter_count(model: TwoPathCNN | CascadeCNN) -> int:
    """Parameters as the paper's table counts them.

    Conv weights without biases, one filter per maxout unit (the 64/64/160 maps,
    not ``maps * K``); a cascade counts its second CNN only.
    """
    network = model.second if isinstance(model, CascadeCNN) else model
    maxout_weights = sum(m.paper_weight_count for m in network.modules() if isinstance(m, MaxoutConv2d))
    return maxout_weights + network.output_layer.weight.numel()
