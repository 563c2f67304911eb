"""The preprocessing steps of one subject, from files to files.

Each function reads its inputs, calls the pure functions of this package and
writes its outputs (atomically) plus a JSON record of what it did; the workflow's
scripts only pass paths and settings in. A failure raises
:class:`PreprocessingError` naming the dataset, subject and step.

Co-registration, skull-stripping and N4 compute on their inputs transposed and
flipped into canonical (RAS+) axis order (exactly: no interpolation), and write
their outputs back in the file's storage order: a copy of a subject stored in
another order is corrected the same, voxel for voxel, and the brain mask stays
on the subject's original grid. Resampling then goes to the canonical
preprocessing grid (:mod:`lesionseg.preprocessing.geometry`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from nibabel.orientations import aff2axcodes

from lesionseg.datasets.validation import AFFINE_ATOL_MM
from lesionseg.io import Volume, read_channels, read_image, write_nifti
from lesionseg.preprocessing.geometry import (
    GridGeometry,
    labels_to_preprocessing_grid,
    preprocessing_grid,
    to_canonical_order,
    to_original_grid,
    to_preprocessing_grid,
)
from lesionseg.preprocessing.normalisation import normalise
from lesionseg.preprocessing.provenance import assemble_provenance, step_record, write_json, write_step_record
from lesionseg.preprocessing.settings import corrected_modalities

log = logging.getLogger(__name__)

# The axis order co-registration, skull-stripping and N4 compute in, named in their step records.
COMPUTED_IN = "RAS"


class PreprocessingError(RuntimeError):
    """A preprocessing step failed for a subject."""


@contextmanager
def step(dataset: str, subject: str, name: str):
    """Log a step's duration and turn its failures into messages naming dataset, subject and step."""
    started = time.perf_counter()
    log.info("%s / %s: %s ...", dataset, subject, name)
    try:
        yield
    except PreprocessingError:
        raise
    except Exception as err:
        raise PreprocessingError(f"dataset {dataset!r}, subject {subject!r}, step {name}: {err}") from err
    log.info("%s / %s: %s done in %.1f s", dataset, subject, name, time.perf_counter() - started)


def _channel(stack: Volume, modalities: Sequence[str], modality: str) -> Volume:
    return Volume(stack.data[..., list(modalities).index(modality)], stack.affine)


def _canonical(volume: Volume) -> tuple[Volume, GridGeometry]:
    """``volume`` in canonical (RAS+) axis order, and the grid whose ``to_original_grid`` leads back."""
    data, grid = to_canonical_order(volume.data, volume.affine)
    return Volume(data, grid.affine), grid


def _stored(data: np.ndarray, grid: GridGeometry) -> np.ndarray:
    """An array computed in canonical order, back in the storage order of ``grid``'s file (exact)."""
    return to_original_grid(data, grid, order=0)


def coregister_subject(
    dataset: str, subject: str, image_paths: Sequence[str], modalities: Sequence[str], reference: str,
    settings: Mapping[str, Any], seed: int, stack_path: str, record_path: str,
) -> None:
    """Rigidly register every modality to ``reference``; write the 4D stack on the reference grid.

    The registrations run in canonical axis order; the stack is written in the
    reference's storage order.
    """
    from lesionseg.preprocessing.coregistration import coregister

    with step(dataset, subject, "coregister"):
        stored = {m: read_image(p) for m, p in zip(modalities, image_paths, strict=True)}
        canonical = {m: _canonical(volume) for m, volume in stored.items()}
        stack, transforms = coregister({m: volume for m, (volume, _) in canonical.items()}, reference,
                                       settings["transform"], seed)
        write_nifti(stack_path, _stored(stack.data, canonical[reference][1]), stored[reference].affine, np.float32)
        write_step_record(record_path, "coregister", settings, reference=reference, transforms=transforms,
                          computed_in=COMPUTED_IN)


def skull_strip_subject(
    dataset: str, subject: str, image_paths: Sequence[str], modalities: Sequence[str], reference: str,
    settings: Mapping[str, Any], seed: int, template_paths: tuple[str | None, str | None],
    mask_path: str, record_path: str, given_mask_path: str | None = None,
) -> float:
    """Brain mask on the subject's original (reference) grid; returns its volume in ml.

    The mask is computed in canonical axis order and written in the images' storage order.
    """
    from lesionseg.preprocessing import skullstrip

    method = settings["method"]
    with step(dataset, subject, f"skull_strip ({method})"):
        stored = read_channels(list(image_paths))
        stack, grid = _canonical(stored)
        reference_image = _channel(stack, modalities, reference)
        if method == "given":
            if given_mask_path is None:
                raise ValueError("skull_strip method 'given' needs the dataset's brain mask ('mask:')")
            given = skullstrip.mask_as_given(read_image(given_mask_path), stored.data.shape, stored.affine,
                                             given_mask_path)
            mask = to_preprocessing_grid(given, grid, order=0)
        elif method == "none":
            files = image_paths if len(image_paths) == len(modalities) else [image_paths[0]] * len(modalities)
            mask = skullstrip.mask_from_brain_only(stack.data, [f"{m} ({f})" for m, f in zip(modalities, files,
                                                                                            strict=True)])
        elif method == "robex":
            mask = skullstrip.mask_with_robex(reference_image, seed)
        elif method == "template":
            template, template_mask = (read_image(p) for p in template_paths)
            mask = skullstrip.mask_with_template(
                reference_image, template, template_mask, settings["transform"], seed,
                settings["registration_spacing_mm"],
            )
        elif method == "hd-bet":
            mask = skullstrip.mask_with_hd_bet(reference_image)
        else:
            raise ValueError(f"unknown skull-strip method {method!r}")
        volume_ml = skullstrip.check_plausible(mask, stack.affine, tuple(settings["brain_volume_ml"]), method)
        log.info("brain mask: %.0f ml", volume_ml)
        write_nifti(mask_path, _stored(mask.astype(np.uint8), grid), stored.affine, np.uint8)
        write_step_record(record_path, "skull_strip", settings, reference=reference, brain_volume_ml=volume_ml,
                          computed_in=COMPUTED_IN)
    return volume_ml


def bias_correct_subject(
    dataset: str, subject: str, image_paths: Sequence[str], modalities: Sequence[str], mask_path: str,
    settings: Mapping[str, Any], stack_path: str, record_path: str,
) -> None:
    """N4 on the configured modalities inside the brain mask; others pass unchanged.

    N4's B-spline grid follows the array's axes: it runs in canonical axis order,
    so the correction does not depend on the storage order; the stack is written
    back in the images' storage order.
    """
    from lesionseg.preprocessing.bias import n4_correct

    with step(dataset, subject, "bias_correct"):
        stored = read_channels(list(image_paths))
        stack, grid = _canonical(stored)
        brain = read_image(mask_path, dtype=None)
        same_affine = np.allclose(brain.affine, stored.affine, atol=AFFINE_ATOL_MM, rtol=0)
        if brain.data.shape != stored.data.shape[:3] or not same_affine:
            raise ValueError(f"the brain mask {mask_path} is not on the grid of {image_paths[0]}")
        mask = to_preprocessing_grid(brain.data > 0, grid, order=0)
        corrected = stack.data.copy()
        chosen = corrected_modalities(settings, tuple(modalities))
        for modality in chosen:
            c = list(modalities).index(modality)
            started = time.perf_counter()
            corrected[..., c] = n4_correct(
                stack.data[..., c], stack.affine, mask, settings["shrink_factor"], tuple(settings["iterations"]),
                settings["spline_distance_mm"],
            )
            log.info("N4 %s: %.1f s", modality, time.perf_counter() - started)
        write_nifti(stack_path, _stored(corrected, grid), stored.affine, np.float32)
        write_step_record(record_path, "bias_correction", settings, corrected=list(chosen), computed_in=COMPUTED_IN)


def resample_crop_subject(
    dataset: str, subject: str, stack_path: str, mask_path: str, settings: Mapping[str, Any],
    out_stack_path: str, out_mask_path: str, geometry_path: str, record_path: str,
) -> GridGeometry:
    """Resample to the isotropic spacing and crop to the brain plus a margin; keep the way back."""
    with step(dataset, subject, "resample_crop"):
        stack = read_image(stack_path)
        mask = read_image(mask_path, dtype=None).data > 0
        geometry = preprocessing_grid(mask, stack.affine, settings["spacing_mm"], settings["margin_mm"])
        stored = "".join(aff2axcodes(stack.affine))
        log.info("grid %s of %s mm, stored %s -> %s of %s mm, RAS", mask.shape,
                 np.round(np.linalg.norm(stack.affine[:3, :3], axis=0), 3), stored, geometry.shape,
                 np.round(geometry.spacing, 3))
        resampled = to_preprocessing_grid(stack.data, geometry, order=1)
        resampled_mask = to_preprocessing_grid(mask.astype(np.uint8), geometry, order=0)
        write_nifti(out_stack_path, resampled, geometry.affine, np.float32)
        write_nifti(out_mask_path, resampled_mask, geometry.affine, np.uint8)
        geometry.to_json(geometry_path)
        write_step_record(record_path, "resample", settings, original_shape=list(mask.shape),
                          shape=list(geometry.shape), original_orientation=stored, orientation="RAS")
    return geometry


def normalise_subject(
    dataset: str, subject: str, stack_path: str, mask_path: str, modalities: Sequence[str],
    settings: Mapping[str, Any], fingerprint: str, records: Sequence[str], raw_paths: Sequence[str],
    image_path: str, provenance_path: str,
) -> None:
    """Normalise every channel inside the brain mask; write the final image and the provenance record."""
    with step(dataset, subject, "normalise"):
        stack = read_image(stack_path)
        mask = read_image(mask_path, dtype=None).data > 0
        data = stack.data if stack.data.ndim == 4 else stack.data[..., None]
        normalised = normalise(data, mask, settings["method"], tuple(settings["percentiles"]))
        write_nifti(image_path, normalised, stack.affine, np.float32)
        steps = [json.loads(Path(p).read_text()) for p in records] + [step_record("normalisation", settings)]
        write_json(provenance_path, assemble_provenance(subject, dataset, fingerprint, modalities, steps, raw_paths))


def preprocess_label(label_path: str, geometry_path: str, out_path: str) -> None:
    """The truth on the preprocessing grid, raw label values kept (label maps stored as floats are rounded)."""
    geometry = GridGeometry.from_json(geometry_path)
    label = read_image(label_path, dtype=None).data
    label = np.rint(label).astype(np.uint16 if label.max() > 255 else np.uint8)
    write_nifti(out_path, labels_to_preprocessing_grid(label, geometry), geometry.affine)


def preprocessing_qc_subject(
    dataset: str, subject: str, raw_paths: Sequence[str], raw_mask_path: str, image_path: str, mask_path: str,
    geometry_path: str, modalities: Sequence[str], png_path: str,
) -> None:
    """The QC picture: each modality before and after preprocessing, with the mask outline."""
    from lesionseg.preprocessing.qc import save_preprocessing_qc

    raw = read_channels(list(raw_paths))
    image = read_image(image_path)
    save_preprocessing_qc(
        png_path, modalities, raw.data, read_image(raw_mask_path, dtype=None).data > 0, image.data,
        read_image(mask_path, dtype=None).data > 0, GridGeometry.from_json(geometry_path),
        title=f"{dataset} / {subject}",
    )
