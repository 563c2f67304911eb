"""Fully connected CRF with Gaussian edge potentials (Krähenbühl & Koltun 2011) in 2D or 3D, as in DeepMedic.

Kamnitsas et al. (2017) post-process DeepMedic's soft segmentation with a 3D
dense CRF whose pairwise potentials are, with Potts compatibility,

* smoothness: ``w1 * exp(-sum_a (x_a / s_a)^2 / 2)`` on voxel position (mm);
* appearance: ``w2 * exp(-sum_a (x_a / b_a)^2 / 2 - sum_m (I_m / s_m)^2 / 2)``
  on position and each modality's intensity (clipped to a range and rescaled
  to 0..255, so the modality sigmas are on that scale).

Mean-field inference follows Krähenbühl's ``densecrf`` (what ``pydensecrf``
runs): unaries ``U = -log p``, ``Q = softmax(-U)``, then each iteration
``Q = softmax(-U + sum_k w_k * n_k * K_k(n_k * Q))`` with each kernel's
symmetric normalisation ``n_k = 1 / sqrt(K_k 1)`` (the filter includes the
self term). The appearance kernel is filtered on a permutohedral lattice
(:mod:`lesionseg.crf.lattice`); the smoothness kernel, a Gaussian on the
regular voxel grid, on the lattice too by default (as the reference does, so
the labels are the same as ``pydensecrf``'s), or exactly by separable
convolution (``smoothness="exact"``: on bench/crf.py's subject 0.1% of the
brain's labels then differ from ``pydensecrf``'s, and it is not faster).
Only the sigmas shape the kernels, so :class:`MeanFieldCRF` builds them once
for inference with several weights.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
import torch

from lesionseg.crf.lattice import PermutohedralLattice
from lesionseg.masks import bounding_box

log = logging.getLogger(__name__)

# Probabilities are clipped to this before the log (unaries stay finite).
MIN_PROBABILITY = 1e-8
# Half-width of the exact smoothness Gaussian, in standard deviations.
EXACT_TRUNCATE = 4.0


def _positive_floats(name: str, values: Any) -> tuple[float, ...]:
    try:
        result = tuple(float(v) for v in values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if not result:
        raise ValueError(f"{name} must not be empty")
    if not all(math.isfinite(v) and v > 0 for v in result):
        raise ValueError(f"{name} must all be positive and finite, got {values!r}")
    return result


@dataclass(frozen=True)
class CRFParameters:
    """Parameters of the dense CRF (DeepMedic's defaults); lengths in mm, intensity sigmas on the 0..255 scale.

    ``smoothness_sigma_mm`` and ``appearance_sigma_mm`` have one value per
    spatial axis (2 or 3, in the arrays' axis order). ``intensity_sigma`` is
    one value per modality, or one for all. Intensities are clipped to
    ``intensity_range`` (our images are z-scores) and mapped linearly to 0..255.
    """

    iterations: int = 5
    smoothness_weight: float = 3.0
    smoothness_sigma_mm: tuple[float, ...] = (3.0, 3.0, 3.0)
    appearance_weight: float = 5.0
    appearance_sigma_mm: tuple[float, ...] = (5.0, 5.0, 5.0)
    intensity_sigma: tuple[float, ...] | float = 3.0
    intensity_range: tuple[float, float] = (-3.1, 3.1)

    def __post_init__(self) -> None:
        iterations = self.iterations
        if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
            raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
        object.__setattr__(self, "iterations", int(iterations))
        for name in ("smoothness_weight", "appearance_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("smoothness_sigma_mm", "appearance_sigma_mm"):
            value = _positive_floats(name, getattr(self, name))
            if len(value) not in (2, 3):
                raise ValueError(f"{name} must have 2 or 3 values (one per spatial axis), got {len(value)}")
            object.__setattr__(self, name, value)
        if len(self.smoothness_sigma_mm) != len(self.appearance_sigma_mm):
            raise ValueError(f"smoothness_sigma_mm {self.smoothness_sigma_mm} and appearance_sigma_mm "
                             f"{self.appearance_sigma_mm} must have the same number of axes")
        sigma = self.intensity_sigma
        if isinstance(sigma, (int, float, np.number)) and not isinstance(sigma, bool):
            object.__setattr__(self, "intensity_sigma", _positive_floats("intensity_sigma", [sigma])[0])
        else:
            object.__setattr__(self, "intensity_sigma", _positive_floats("intensity_sigma", sigma))
        try:
            low, high = (float(v) for v in self.intensity_range)
        except (TypeError, ValueError):
            raise ValueError(f"intensity_range must be two numbers (low, high), got {self.intensity_range!r}") \
                from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"intensity_range must be finite with low < high, got {self.intensity_range!r}")
        object.__setattr__(self, "intensity_range", (low, high))

    @property
    def dimensions(self) -> int:
        """Spatial dimensions the sigmas are given for."""
        return len(self.smoothness_sigma_mm)

    def intensity_sigmas(self, n_modalities: int) -> tuple[float, ...]:
        """One intensity sigma per modality (``ValueError`` if the count does not match)."""
        if isinstance(self.intensity_sigma, float):
            return (self.intensity_sigma,) * n_modalities
        if len(self.intensity_sigma) == 1:
            return self.intensity_sigma * n_modalities
        if len(self.intensity_sigma) != n_modalities:
            raise ValueError(f"intensity_sigma has {len(self.intensity_sigma)} values but the image has "
                             f"{n_modalities} modalities")
        return self.intensity_sigma

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> CRFParameters:
        """From a config/YAML mapping: missing keys take the defaults, lists become tuples, unknown keys are errors."""
        mapping = dict(mapping or {})
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(f"unknown CRF parameter(s): {', '.join(map(str, unknown))} "
                             f"(known: {', '.join(sorted(known))})")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in mapping.items()})

    def to_mapping(self) -> dict[str, Any]:
        """Plain YAML-able dict (tuples as lists); ``from_mapping`` of it gives these parameters back."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


# -- kernels ----------------------------------------------------------------------------------------------------------


class _Kernel(ABC):
    """A symmetric-normalised Gaussian kernel: message ``w * n * K(n * Q)`` with ``n = 1 / sqrt(K 1)``.

    As the classes' probabilities sum to one, only all classes but the last are
    filtered: the last one's is ``K(n) - sum of the others`` (``K(n)`` is
    filtered along with the classes the first time). Nothing here depends on
    the weight ``w``, so one kernel serves any weight.
    """

    def __init__(self) -> None:
        self.lattice_seconds = 0.0  # of building its lattice, if it has one
        self.norm: torch.Tensor | None = None
        self.filtered_norm: torch.Tensor | None = None
        self._buffers: torch.Tensor | None = None  # input and output of the filter, flat

    @abstractmethod
    def filter(self, values: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The kernel applied to ``values`` (N, C), written to ``out`` if given."""

    @abstractmethod
    def describe(self) -> str:
        """One line for the log: the filter and its size."""

    def normalise(self, n_points: int, device: torch.device) -> None:
        ones = torch.ones((n_points, 1), dtype=torch.float32, device=device)
        self.norm = torch.rsqrt(self.filter(ones) + 1e-20)

    def add_message(self, energy: torch.Tensor, q: torch.Tensor, weight: float) -> None:
        """``energy += w * n * K(n * Q)`` for ``Q`` (N, C) summing to one over the classes."""
        assert self.norm is not None
        others = q.shape[1] - 1
        first = self.filtered_norm is None
        channels = others + 1 if first else others
        size = q.shape[0] * channels
        if self._buffers is None or self._buffers.numel() < 2 * size:
            self._buffers = torch.empty(2 * size, dtype=torch.float32, device=q.device)
        values = self._buffers[:size].view(-1, channels)
        torch.mul(q[:, :others], self.norm, out=values[:, :others])
        if first:
            values[:, others:] = self.norm
        filtered = self.filter(values, out=self._buffers[size:2 * size].view(-1, channels))
        if first:
            self.filtered_norm = filtered[:, others:].clone()
        energy[:, :others].addcmul_(filtered[:, :others], self.norm, value=weight)
        energy[:, others:].addcmul_(self.filtered_norm - filtered[:, :others].sum(dim=1, keepdim=True), self.norm,
                                    value=weight)


class _LatticeKernel(_Kernel):
    def __init__(self, features: torch.Tensor, device: torch.device) -> None:
        super().__init__()
        self.lattice = PermutohedralLattice(features, device=device)
        self.lattice_seconds = self.lattice.build_seconds
        self.normalise(features.shape[0], device)

    def filter(self, values: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return self.lattice.filter(values, out=out)

    def describe(self) -> str:
        lattice = self.lattice
        stages = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in lattice.timings.items())
        return (f"lattice d={lattice.d}: {lattice.n_vertices} vertices, {lattice.n_isolated} points on isolated "
                f"simplices (built in {lattice.build_seconds:.2f} s: {stages})")


class _GridGaussianKernel(_Kernel):
    """Exact Gaussian on the regular grid of the box (separable, zero outside the box / the points).

    Each axis is filtered by a product with a banded (truncated) Gaussian
    matrix, which is faster on CPU than ``conv3d`` with long 1D kernels.
    """

    def __init__(self, sigma_voxels: Sequence[float], shape: tuple[int, ...], points: torch.Tensor | None,
                 device: torch.device) -> None:
        super().__init__()
        self.shape, self.points = shape, points
        self.bands = []
        for sigma, n in zip(sigma_voxels, shape, strict=True):
            index = torch.arange(n, dtype=torch.float64, device=device)
            distance = (index[:, None] - index[None, :]).abs()
            band = torch.exp(-0.5 * (distance / sigma) ** 2)
            band[distance > math.ceil(EXACT_TRUNCATE * sigma)] = 0.0
            self.bands.append(band.to(torch.float32))
        self.normalise(int(np.prod(shape)) if points is None else int(points.numel()), device)

    def filter(self, values: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        channels = values.shape[1]
        if self.points is None:
            grid = values.reshape(self.shape + (channels,))
        else:
            grid = values.new_zeros((int(np.prod(self.shape)), channels))
            grid[self.points] = values
            grid = grid.reshape(self.shape + (channels,))
        letters = "abcd"[: len(self.shape)]
        for axis, band in enumerate(self.bands):
            source = letters.replace(letters[axis], "j")
            grid = torch.einsum(f"{letters[axis]}j,{source}z->{letters}z", band, grid)
        flat = grid.reshape(-1, channels)
        flat = flat if self.points is None else flat[self.points]
        return flat if out is None else out.copy_(flat)

    def describe(self) -> str:
        return "exact separable Gaussian"


# -- inference --------------------------------------------------------------------------------------------------------


def _softmax(energy: torch.Tensor) -> torch.Tensor:
    """In-place softmax over the classes (dim 1); faster than ``torch.softmax`` for few classes on CPU."""
    energy -= energy.amax(dim=1, keepdim=True)
    energy.exp_()
    return energy.div_(energy.sum(dim=1, keepdim=True))


def _validate(probabilities: np.ndarray, images: np.ndarray, spacing: Sequence[float], parameters: CRFParameters,
              mask: np.ndarray | None) -> tuple[tuple[int, ...], tuple[float, ...]]:
    if not isinstance(parameters, CRFParameters):
        raise ValueError(f"parameters must be CRFParameters, got {type(parameters).__name__}")
    probabilities, images = np.asarray(probabilities), np.asarray(images)
    if probabilities.ndim not in (3, 4):
        raise ValueError(f"probabilities must be (classes, *spatial) with 2 or 3 spatial axes, got shape "
                         f"{probabilities.shape}")
    spatial = tuple(probabilities.shape[1:])
    if probabilities.shape[0] < 2:
        raise ValueError(f"probabilities need at least 2 classes, got {probabilities.shape[0]}")
    if images.ndim != probabilities.ndim or tuple(images.shape[1:]) != spatial:
        raise ValueError(f"images must be (modalities, *{spatial}) like the probabilities, got shape {images.shape}")
    if images.shape[0] < 1:
        raise ValueError("images need at least one modality")
    if min(spatial) < 1:
        raise ValueError(f"empty spatial shape {spatial}")
    try:
        spacing_t = tuple(float(s) for s in spacing)
    except TypeError:
        raise ValueError(f"spacing must be a sequence of numbers, got {spacing!r}") from None
    if len(spacing_t) != len(spatial):
        raise ValueError(f"spacing has {len(spacing_t)} values for {len(spatial)} spatial axes")
    if not all(math.isfinite(s) and s > 0 for s in spacing_t):
        raise ValueError(f"spacing must be positive and finite, got {spacing_t}")
    if parameters.dimensions != len(spatial):
        raise ValueError(f"the CRF parameters' sigmas have {parameters.dimensions} axes but the image has "
                         f"{len(spatial)}")
    parameters.intensity_sigmas(images.shape[0])
    if mask is not None and tuple(np.shape(mask)) != spatial:
        raise ValueError(f"mask shape {np.shape(mask)} differs from the image's {spatial}")
    if not np.issubdtype(probabilities.dtype, np.number) or not np.isfinite(probabilities).all():
        raise ValueError("probabilities must be finite numbers")
    if not np.issubdtype(images.dtype, np.number) or not np.isfinite(images).all():
        raise ValueError("images must be finite numbers")
    return spatial, spacing_t


def _positions(shape: tuple[int, ...], scale: Sequence[float], points: torch.Tensor | None) -> torch.Tensor:
    """(N, ndim) voxel index * scale of the grid's points (C order), float32, on the CPU."""
    axes = [torch.arange(n, dtype=torch.float32) * float(s) for n, s in zip(shape, scale, strict=True)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(shape))
    return grid if points is None else grid[points]


def _sigmas(parameters: CRFParameters) -> tuple[Any, ...]:
    """What the kernels depend on (the weights and iterations only weigh and repeat their messages)."""
    return (parameters.smoothness_sigma_mm, parameters.appearance_sigma_mm, parameters.intensity_sigma,
            parameters.intensity_range)


class MeanFieldCRF:
    """One subject's dense CRF for given sigmas: its unaries and kernels, built once, and mean-field inference
    with any weights and number of iterations (:meth:`marginals`), as a parameter search needs.

    Arguments as :func:`dense_crf`'s; ``parameters`` fixes the sigmas and the
    intensity range (its weights and iterations are not used). A kernel is
    built when a call first gives it a positive weight, then kept.
    """

    def __init__(self, probabilities: np.ndarray, images: np.ndarray, spacing: Sequence[float],
                 parameters: CRFParameters = CRFParameters(), mask: np.ndarray | None = None,
                 device: torch.device | str | None = None, *, exclude_outside_mask: bool = False,
                 smoothness: Literal["lattice", "exact"] = "lattice") -> None:
        self.spatial, self.spacing = _validate(probabilities, images, spacing, parameters, mask)
        if smoothness not in ("lattice", "exact"):
            raise ValueError(f"smoothness must be 'lattice' or 'exact', got {smoothness!r}")
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.sigmas, self.smoothness = _sigmas(parameters), smoothness
        self.parameters = parameters
        self.probabilities = np.asarray(probabilities, dtype=np.float32)
        self.images = np.asarray(images)
        self.box: tuple[slice, ...] | None = tuple(slice(0, n) for n in self.spatial)
        self.points: torch.Tensor | None = None  # the box's voxels in the CRF, C order (None: all)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            self.box = bounding_box(mask)
            if self.box is not None and exclude_outside_mask and not mask[self.box].all():
                self.points = torch.from_numpy(np.flatnonzero(mask[self.box].reshape(-1)))
        self.kernels: dict[str, _Kernel] = {}
        self.build_seconds = 0.0  # of building the kernels so far
        if self.box is not None:
            self.box_shape = tuple(s.stop - s.start for s in self.box)
            self.log_p = self._box_values(self.probabilities).clamp_(min=MIN_PROBABILITY).log_().to(self.device)

    def _box_values(self, array: np.ndarray) -> torch.Tensor:
        """(N, channels) float32 of the CRF's points, on the CPU."""
        assert self.box is not None
        channels = torch.from_numpy(np.ascontiguousarray(array[(slice(None),) + self.box], dtype=np.float32))
        channels = channels.reshape(array.shape[0], -1)
        if self.points is not None:
            channels = channels[:, self.points]
        return channels.T.contiguous()

    def _kernel(self, name: str) -> _Kernel:
        if name not in self.kernels:
            started = time.perf_counter()
            parameters = self.parameters
            if name == "smoothness":
                scale = [s / sigma for s, sigma in zip(self.spacing, parameters.smoothness_sigma_mm, strict=True)]
                if self.smoothness == "exact":
                    points = None if self.points is None else self.points.to(self.device)
                    self.kernels[name] = _GridGaussianKernel([1 / c for c in scale], self.box_shape, points,
                                                             self.device)
                else:
                    self.kernels[name] = _LatticeKernel(_positions(self.box_shape, scale, self.points), self.device)
            else:
                scale = [s / sigma for s, sigma in zip(self.spacing, parameters.appearance_sigma_mm, strict=True)]
                low, high = parameters.intensity_range
                intensity = self._box_values(self.images)
                intensity.clamp_(low, high).sub_(low).mul_(255.0 / (high - low))
                intensity /= torch.tensor(parameters.intensity_sigmas(intensity.shape[1]), dtype=torch.float32)
                features = torch.cat([_positions(self.box_shape, scale, self.points), intensity], dim=1)
                del intensity
                self.kernels[name] = _LatticeKernel(features, self.device)
            self.build_seconds += time.perf_counter() - started
        return self.kernels[name]

    @property
    def lattice_seconds(self) -> float:
        """Of building the kernels' lattices so far (part of :attr:`build_seconds`)."""
        return sum(kernel.lattice_seconds for kernel in self.kernels.values())

    def marginals(self, parameters: CRFParameters) -> np.ndarray:
        """CRF marginals (n_classes, *spatial) float32 with ``parameters``' weights and iterations; outside the
        CRF's voxels the input probabilities."""
        if not isinstance(parameters, CRFParameters):
            raise ValueError(f"parameters must be CRFParameters, got {type(parameters).__name__}")
        if _sigmas(parameters) != self.sigmas:
            raise ValueError(f"these kernels were built for sigmas and intensity range {self.sigmas}, not "
                             f"{_sigmas(parameters)}")
        output = self.probabilities.copy()
        if self.box is None:
            log.info("dense CRF: empty mask, probabilities returned unchanged")
            return output
        started = time.perf_counter()
        weighted = [(self._kernel(name), weight) for name, weight in
                    (("smoothness", parameters.smoothness_weight), ("appearance", parameters.appearance_weight))
                    if weight > 0]
        built = time.perf_counter()
        q = _softmax(self.log_p.clone())
        energy = torch.empty_like(q)
        for _ in range(parameters.iterations):
            energy.copy_(self.log_p)
            for kernel, weight in weighted:
                kernel.add_message(energy, q, weight)
            q, energy = _softmax(energy), q
        marginals = q.T.cpu().numpy()
        n_classes = output.shape[0]
        region = output[(slice(None),) + self.box]
        if self.points is None:
            region[...] = marginals.reshape((n_classes,) + self.box_shape)
        else:
            flat = region.reshape(n_classes, -1)
            flat[:, self.points.numpy()] = marginals
            region[...] = flat.reshape(region.shape)
        log.info("dense CRF: box %s of %s, %d points, %s; kernels built in %.2f s, %d iterations %.2f s",
                 "x".join(map(str, self.box_shape)), "x".join(map(str, self.spatial)), self.log_p.shape[0],
                 "; ".join(k.describe() for k, _ in weighted) or "no kernels", built - started,
                 parameters.iterations, time.perf_counter() - built)
        return output


def dense_crf(probabilities: np.ndarray, images: np.ndarray, spacing: Sequence[float],
              parameters: CRFParameters = CRFParameters(), mask: np.ndarray | None = None,
              device: torch.device | str | None = None, *, exclude_outside_mask: bool = False,
              smoothness: Literal["lattice", "exact"] = "lattice") -> np.ndarray:
    """CRF marginals (n_classes, *spatial) float32 for probabilities (n_classes, *spatial) and images
    (n_modalities, *spatial); 2D or 3D.

    ``spacing`` is the voxel size (mm) per spatial axis. With a ``mask``
    (e.g. the brain), only its bounding box is processed and the output
    outside the box is the input probabilities; with ``exclude_outside_mask``
    the voxels of the box outside the mask are left out of the CRF too (they
    keep their input probabilities and send no messages: faster, but on
    bench/crf.py's subject 0.6% of the brain's labels then differ from
    pydensecrf's). An empty
    mask returns the input. ``device``: where to filter (default CPU; the
    lattices are built on the CPU). The smoothness kernel is filtered on the
    lattice (``"lattice"``, like the reference implementation) or by exact
    separable convolution (``"exact"``).
    """
    crf = MeanFieldCRF(probabilities, images, spacing, parameters, mask, device,
                       exclude_outside_mask=exclude_outside_mask, smoothness=smoothness)
    return crf.marginals(parameters)
