"""Conversion between lesionseg volumes (RAS+ affine) and ANTsPy images (LPS+ geometry)."""

from __future__ import annotations

import os

import numpy as np

from lesionseg.io import Volume

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def set_threads(threads: int) -> None:
    """Let ITK (ANTs) use ``threads`` threads; call before the first ANTs operation of the process."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(max(1, int(threads)))


def seed_registrations(seed: int) -> None:
    """Seed the random sampling of ANTs registrations.

    ANTsPy reads the seed from its config module (a ``random_seed`` argument to
    ``ants.registration`` is silently ignored). Registrations repeat exactly only
    on one ITK thread: the workflow runs them so, several subjects at a time.
    """
    import ants.config

    ants.config._random_seed = int(seed)  # noqa: SLF001 - ANTsPy's only hook for a seed


def to_ants(data: np.ndarray, affine: np.ndarray):
    """An ANTsImage of a 3D array ``(x, y, z)`` with a RAS+ ``affine``."""
    import ants

    linear = affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    direction = _LPS_FROM_RAS @ (linear / spacing)
    origin = _LPS_FROM_RAS @ affine[:3, 3]
    return ants.from_numpy(
        np.ascontiguousarray(data, dtype=np.float32), origin=tuple(origin), spacing=tuple(spacing),
        direction=direction,
    )


def from_ants(image) -> Volume:
    """A :class:`Volume` (float32, RAS+ affine) of a 3D ANTsImage."""
    affine = np.eye(4)
    affine[:3, :3] = _LPS_FROM_RAS @ (np.asarray(image.direction) * np.asarray(image.spacing))
    affine[:3, 3] = _LPS_FROM_RAS @ np.asarray(image.origin)
    return Volume(np.asarray(image.numpy(), dtype=np.float32), affine)
