"""Rigid co-registration of every modality to the reference modality (ANTsPy)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from lesionseg.io import Volume
from lesionseg.preprocessing.ants_bridge import from_ants, seed_registrations, to_ants

log = logging.getLogger(__name__)


def coregister(
    images: Mapping[str, Volume], reference: str, transform: str = "Rigid", seed: int = 1
) -> tuple[Volume, dict[str, dict]]:
    """Register each modality to ``reference`` and resample it onto the reference grid.

    Returns a 4D volume ``(x, y, z, c)`` with channels in the order of ``images``,
    on the reference's grid, and per modality what was done (the transform's
    parameters, for the provenance record).
    """
    import ants

    fixed_volume = images[reference]
    fixed = to_ants(fixed_volume.data, fixed_volume.affine)
    channels, record = [], {}
    for modality, volume in images.items():
        if modality == reference:
            channels.append(fixed_volume.data.astype(np.float32))
            record[modality] = {"transform": "identity (reference)"}
            continue
        log.info("registering %s to %s (%s)", modality, reference, transform)
        moving = to_ants(volume.data, volume.affine)
        seed_registrations(seed)
        result = ants.registration(fixed=fixed, moving=moving, type_of_transform=transform)
        warped = ants.apply_transforms(fixed=fixed, moving=moving, transformlist=result["fwdtransforms"],
                                       interpolator="linear")
        channels.append(from_ants(warped).data)
        parameters = ants.read_transform(result["fwdtransforms"][0]).parameters
        record[modality] = {"transform": transform, "parameters": [float(p) for p in parameters]}
    return Volume(np.stack(channels, axis=-1), fixed_volume.affine), record
