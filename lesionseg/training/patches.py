"""Training segments: cut around sample centres from padded volumes, and augmented.

A 3D model gets ``(C, I, I, I)`` inputs whose central ``O^3`` output region is
centred on the sample centre (``I = model.input_size(O)``); a 2D model gets the
axial slice through the centre, ``(C, I, I)`` for an ``O x O`` output. Volumes
are reflect-padded (as dense inference does) and their labels padded with
:data:`IGNORE`, so centres near the border stay usable and padding is never
learnt as a class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from lesionseg.io import read_image
from lesionseg.labels import LabelScheme

IGNORE = -100  # torch's cross-entropy ignore_index


@dataclass
class TrainingVolume:
    """A subject ready for segment extraction: padded image ``(C, X, Y, Z)`` and class map."""

    image: np.ndarray
    classes: np.ndarray
    pad: int


def _input_window(model: nn.Module, output_size: int) -> tuple[int, int]:
    """Input side, and how far the input reaches before a segment's centre voxel."""
    input_size = model.input_size(output_size)
    before_centre = output_size // 2 + getattr(model, "output_offset", (input_size - output_size) // 2)
    return input_size, before_centre


def required_pad(model: nn.Module, output_size: int) -> int:
    """Padding that lets a segment be cut around any voxel (and no more: volumes stay small)."""
    input_size, before_centre = _input_window(model, output_size)
    return max(before_centre, input_size - before_centre)


def load_training_volume(image_path: str, label_path: str, scheme: LabelScheme, pad: int) -> TrainingVolume:
    """Read a preprocessed subject (image ``(x, y, z, c)``, raw labels) and pad it."""
    image = read_image(image_path).data
    image = image if image.ndim == 4 else image[..., None]
    classes = scheme.to_classes(read_image(label_path, dtype=None).data).astype(np.int64)
    image = np.pad(np.moveaxis(image, -1, 0), [(0, 0)] + [(pad, pad)] * 3, mode="reflect")
    classes = np.pad(classes, pad, mode="constant", constant_values=IGNORE)
    return TrainingVolume(np.ascontiguousarray(image, dtype=np.float32), classes, pad)


def cut_segments(
    volume: TrainingVolume, centres: np.ndarray, model: nn.Module, output_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(N, C, *I)`` and targets ``(N, *O)`` for the centres ``(N, 3)`` (unpadded voxel indices)."""
    input_size, before_in = _input_window(model, output_size)
    before_out = output_size // 2
    spatial = 3 if model.dims == 3 else 2
    inputs = np.empty((len(centres), volume.image.shape[0], *([input_size] * spatial)), dtype=np.float32)
    targets = np.empty((len(centres), *([output_size] * spatial)), dtype=np.int64)
    for n, centre in enumerate(np.asarray(centres) + volume.pad):
        in_region = tuple(slice(c - before_in, c - before_in + input_size) for c in centre[:spatial])
        out_region = tuple(slice(c - before_out, c - before_out + output_size) for c in centre[:spatial])
        if spatial == 2:  # the axial slice through the centre
            in_region, out_region = (*in_region, centre[2]), (*out_region, centre[2])
        inputs[n] = volume.image[(slice(None), *in_region)]
        targets[n] = volume.classes[out_region]
    return inputs, targets


def augment(
    inputs: np.ndarray, targets: np.ndarray, settings: dict[str, Any], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """DeepMedic's augmentation: per channel ``(I + s) * c``, s ~ N(0, shift), c ~ N(1, scale); random flips."""
    n, channels = inputs.shape[:2]
    shift = rng.normal(0.0, settings["intensity_shift_std"], size=(n, channels)).astype(np.float32)
    scale = rng.normal(1.0, settings["intensity_scale_std"], size=(n, channels)).astype(np.float32)
    expand = (slice(None), slice(None)) + (None,) * (inputs.ndim - 2)
    inputs = (inputs + shift[expand]) * scale[expand]
    spatial = inputs.ndim - 2
    for axis, probability in enumerate(settings["flip_probability"][:spatial]):
        flip = rng.random(n) < probability
        if flip.any():
            inputs[flip] = np.flip(inputs[flip], axis=axis + 2)
            targets[flip] = np.flip(targets[flip], axis=axis + 1)
    return np.ascontiguousarray(inputs), np.ascontiguousarray(targets)
