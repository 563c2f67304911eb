"""Preprocessing settings: the defaults, per-format presets and their resolution.

Declared once here as data. A dataset's settings are the defaults, updated by its
format's preset, updated by the ``preprocessing:`` entry of its config (nested
keys merge). The fingerprint of the resolved settings identifies what a model
was trained on.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

SKULL_STRIP_METHODS = ("given", "none", "robex", "template", "hd-bet")
NORMALISATION_METHODS = ("zscore", "percentile-zscore")
# The built-in average head of the synthetic population, usable as a skull-strip template.
SYNTHETIC_TEMPLATE = "synthetic"
# Modalities preferred as the reference (grid, registration target, skull-strip input).
REFERENCE_PREFERENCE = ("t1", "t1n", "mprage")

DEFAULTS: dict[str, Any] = {
    # Modality whose grid is the subject's original grid; default: the first of
    # REFERENCE_PREFERENCE present, else the first modality.
    "reference": None,
    # Rigid registration of every modality to the reference (off: BraTS and ISLES come co-registered).
    "coregister": {"enabled": False, "transform": "Rigid"},
    "skull_strip": {
        "method": "none",             # data already brain-only (BraTS, ISLES); "given" when the dataset has 'mask:'
        "template": None,             # head template image (template method), or "synthetic"
        "template_mask": None,        # its brain mask
        "transform": "SyN",           # ANTs transform from template to subject
        "registration_spacing_mm": 2.0,  # the registration runs on images this coarse
        "brain_volume_ml": [600.0, 2500.0],  # plausible brain mask volume
    },
    "bias_correction": {
        "modalities": "all",          # or a list, e.g. [t1, t1ce] as Havaei et al.
        "shrink_factor": 4,
        "iterations": [50, 50, 50, 50],
        "spline_distance_mm": 200.0,
    },
    "resample": {"spacing_mm": 1.0, "margin_mm": 8.0},
    "normalisation": {"method": "zscore", "percentiles": [1.0, 99.0]},
    "seed": 1,  # registrations sample the metric at random points
}

FORMAT_PRESETS: dict[str, dict[str, Any]] = {
    # The synthetic heads have skulls: strip them with the population's average head.
    # Coarser registration and three N4 levels keep the demo fast on a CPU; a fourth
    # level (25 mm control points) fits tissue contrast rather than the smooth bias.
    "synthetic": {
        "skull_strip": {"method": "template", "template": SYNTHETIC_TEMPLATE, "registration_spacing_mm": 3.0},
        "bias_correction": {"iterations": [50, 50, 30]},
    },
    # ISLES 2022 comes in native space: DWI and ADC share a grid, FLAIR has its own, so
    # every modality is registered to the DWI. Its only preprocessing was skull-stripping,
    # for de-identification (release description, Zenodo record 7960856; Hernandez Petzsche
    # et al., Sci Data 2022), so the images are brain-only and skull_strip stays 'none'.
    "isles2022": {"reference": "dwi", "coregister": {"enabled": True}},
    # ATLAS v2.0 T1w images are whole (defaced) heads in MNI space, not brain-extracted
    # (only the ATLAS v3.0 release adds brain-extracted images): ROBEX strips the T1 offline.
    "atlas2": {"skull_strip": {"method": "robex"}},
    # MSSEG 2016 needs no entry: its Preprocessed_Data are already registered to the FLAIR,
    # brain-masked and N4-corrected (the challenge's Anima script), so the defaults fit.
}


class PreprocessingConfigError(ValueError):
    """The preprocessing settings of a dataset are inconsistent."""


def deep_update(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in, recursively for nested mappings."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_settings(
    dataset: str, fmt: str, modalities: tuple[str, ...], overrides: Mapping[str, Any],
    default_spacing_mm: float | None = None, has_mask: bool = False,
) -> dict[str, Any]:
    """The complete preprocessing settings of a dataset, checked.

    ``default_spacing_mm`` replaces the default resampling spacing (the synthetic
    cohort is resampled to its own spacing unless the config says otherwise).
    A dataset that ships its brain masks (``has_mask``) uses them (skull-strip
    method ``given``) unless ``overrides`` choose another method.
    """
    settings = deep_update(DEFAULTS, FORMAT_PRESETS.get(fmt, {}))
    if default_spacing_mm is not None:
        settings["resample"]["spacing_mm"] = float(default_spacing_mm)
    if has_mask:
        settings["skull_strip"]["method"] = "given"
    settings = deep_update(settings, overrides)

    def fail(message: str) -> PreprocessingConfigError:
        return PreprocessingConfigError(f"dataset {dataset!r}, preprocessing: {message}")

    if settings["reference"] is None:
        settings["reference"] = next((m for m in REFERENCE_PREFERENCE if m in modalities), modalities[0])
    elif settings["reference"] not in modalities:
        raise fail(f"reference {settings['reference']!r} is not one of the modalities {list(modalities)}")
    strip = settings["skull_strip"]
    if strip["method"] == "given" and not has_mask:
        raise fail("skull_strip method 'given' needs the dataset's brain masks: add 'mask:', a path template "
                   "below root such as '{subject}/brainmask.nii.gz'")
    if strip["method"] == "template" and not strip["template"]:
        raise fail("skull_strip method 'template' needs 'template' (and 'template_mask'), or template: synthetic")
    if strip["method"] == "template" and strip["template"] != SYNTHETIC_TEMPLATE and not strip["template_mask"]:
        raise fail("skull_strip 'template_mask' is missing: give the brain mask of the template")
    low, high = strip["brain_volume_ml"]
    if not 0 < low < high:
        raise fail(f"skull_strip brain_volume_ml must be [low, high] with 0 < low < high, got {[low, high]}")
    n4 = settings["bias_correction"]
    if n4["modalities"] != "all":
        unknown = [m for m in n4["modalities"] if m not in modalities]
        if unknown:
            raise fail(f"bias_correction modalities {unknown} are not among {list(modalities)}")
    low, high = settings["normalisation"]["percentiles"]
    if not 0 <= low < high <= 100:
        raise fail(f"normalisation percentiles must satisfy 0 <= low < high <= 100, got {[low, high]}")
    return settings


def corrected_modalities(bias_correction: Mapping[str, Any], modalities: tuple[str, ...]) -> tuple[str, ...]:
    """The modalities N4 corrects (per the ``bias_correction`` settings), in channel order."""
    chosen = bias_correction["modalities"]
    return modalities if chosen == "all" else tuple(m for m in modalities if m in chosen)


# The settings that define what a network sees. The others (reference grid, co-registration, skull-stripping,
# registration seed) say how a dataset's scans become brain-only co-registered images: they stay the dataset's own
# when a model is applied to it, while these travel with the model.
MODEL_KEYS = ("bias_correction", "resample", "normalisation")


def model_preprocessing(settings: Mapping[str, Any], modalities: tuple[str, ...]) -> dict[str, Any]:
    """The settings of :data:`MODEL_KEYS`, with the bias-corrected modalities listed (not 'all')."""
    chosen = {key: copy.deepcopy(settings[key]) for key in MODEL_KEYS}
    chosen["bias_correction"]["modalities"] = list(corrected_modalities(settings["bias_correction"], modalities))
    return chosen


def fingerprint(settings: Mapping[str, Any], modalities: tuple[str, ...]) -> str:
    """A short hash of what defines the preprocessed images' meaning for a network: the channels and the
    settings of :data:`MODEL_KEYS`."""
    payload = json.dumps({"settings": model_preprocessing(settings, modalities), "modalities": list(modalities)},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
