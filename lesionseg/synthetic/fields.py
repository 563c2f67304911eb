"""Smooth random fields and partial-volume ramps shared by the synthetic generator."""

from __future__ import annotations

import numpy as np


def _gaussian_basis(n_voxels: int, spacing_mm: float, length_mm: float) -> np.ndarray:
    """1-D Gaussian bumps sampled on ``n_voxels`` voxels, shape ``(n_voxels, n_bumps)``.

    Bumps of width ``length_mm`` are centred every ``length_mm`` (and past both ends,
    so the field has no edge effects). Each row has unit L2 norm, so a field built
    from independent N(0, 1) weights has unit variance at every voxel.
    """
    step = length_mm / spacing_mm  # voxels
    if step <= 1.0:
        # Correlated over less than a voxel: independent noise per voxel.
        return np.eye(n_voxels, dtype=np.float32)
    centres = np.arange(-2.0 * step, n_voxels + 2.0 * step, step)
    positions = np.arange(n_voxels, dtype=np.float64)[:, None]
    basis = np.exp(-0.5 * ((positions - centres[None, :]) / step) ** 2)
    basis /= np.linalg.norm(basis, axis=1, keepdims=True)
    return basis.astype(np.float32)


def smooth_random_field(
    rng: np.random.Generator, shape: tuple[int, int, int], spacing_mm: float, length_mm: float
) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field, float32 of ``shape`` (x, y, z).

    ``length_mm`` is the width of the Gaussian bumps the field is made of (its
    correlation length). The field is a separable sum of bumps, evaluated by three
    small tensor contractions instead of filtering a full-size noise volume, which
    keeps it cheap at 1 mm.
    """
    basis_x, basis_y, basis_z = (_gaussian_basis(n, spacing_mm, length_mm) for n in shape)
    weights = rng.standard_normal((basis_x.shape[1], basis_y.shape[1], basis_z.shape[1]), dtype=np.float32)
    # Plain einsum, not BLAS: multi-threaded BLAS rounds differently with the
    # number of threads, and the same (seed, index) must give the same bits.
    field = np.einsum("ijk,zk->ijz", weights, basis_z)
    field = np.einsum("ijz,yj->iyz", field, basis_y)
    return np.einsum("iyz,xi->xyz", field, basis_x)


def inside_fraction(signed_distance_mm: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Fraction of each voxel on the negative side of a surface, float32 in [0, 1].

    ``signed_distance_mm`` is the distance of the voxel centre to the surface
    (negative inside). A linear ramp one voxel wide approximates partial volume.
    """
    return np.clip(0.5 - signed_distance_mm / spacing_mm, 0.0, 1.0).astype(np.float32, copy=False)
