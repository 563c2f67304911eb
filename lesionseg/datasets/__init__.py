"""Datasets declared in the config: layout, modalities, label scheme, subjects.

A :class:`Dataset` is built from one entry under ``datasets:``; adding a dataset
means adding such an entry, never code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lesionseg.config import ConfigError
from lesionseg.datasets.formats import (
    FORMATS,
    ISLES2015_TAGS,
    DiscoveryError,
    SubjectFiles,
    check_templates,
    discover_generic,
    image_templates,
    prefixed_path,
    template_placeholders,
    vsd_path,
)
from lesionseg.datasets.splits import split_fractions
from lesionseg.labels import LabelScheme, scheme_from_config
from lesionseg.preprocessing.settings import PreprocessingConfigError, resolve_settings

RESULTS_DIR = Path("results")
SUBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# What the built-in cohort of each kind looks like on disk: the release it imitates
# (so the same readers read it), its modalities and its label scheme.
SYNTHETIC_KINDS: dict[str, dict[str, Any]] = {
    "tumor": {"layout": "brats2021", "modalities": ("flair", "t1", "t1ce", "t2"), "labels": "brats2013",
              "prefix": "SynthTumor"},
    "stroke": {"layout": "isles2015", "modalities": ("flair", "t1", "t2", "dwi"), "labels": "binary",
               "prefix": "SynthStroke"},
}


SYNTHETIC_VSD_IDS = {"flair": 10001, "t1": 10002, "t2": 10003, "dwi": 10004, "OT": 10009}


def synthetic_subject_ids(kind: str, n_subjects: int) -> list[str]:
    """Names of the generated subjects, ``SynthTumor_000`` ..."""
    return [f"{SYNTHETIC_KINDS[kind]['prefix']}_{i:03d}" for i in range(n_subjects)]


def synthetic_subject_files(kind: str, root: Path, subject: str) -> SubjectFiles:
    """Where a generated subject's files go, in the naming of the release it imitates.

    Depends on the subject's name only (not its index), so that a rule's output
    patterns can be made by calling it with ``subject="{subject}"``.
    """
    spec = SYNTHETIC_KINDS[kind]
    if spec["layout"] == "brats2021":
        images = {m: prefixed_path(root, subject, m, "_") for m in spec["modalities"]}
        return SubjectFiles(
            subject,
            images,
            prefixed_path(root, subject, "seg", "_"),
            {"brain_mask": prefixed_path(root, subject, "brainmask", "_")},
        )
    # ISLES 2015 numbers each image; one number per modality is enough for the readers.
    images = {
        m: vsd_path(root, subject, ISLES2015_TAGS[m], SYNTHETIC_VSD_IDS[m], ".nii") for m in spec["modalities"]
    }
    label = vsd_path(root, subject, "OT", SYNTHETIC_VSD_IDS["OT"], ".nii")
    return SubjectFiles(subject, images, label, {"brain_mask": root / subject / "brainmask.nii.gz"})


@dataclass(frozen=True)
class Dataset:
    """One dataset of the config, resolved: where its files are and how to read them."""

    name: str
    format: str
    root: Path
    modalities: tuple[str, ...]
    scheme: LabelScheme
    entry: Mapping[str, Any]
    preprocessing: Mapping[str, Any]

    @property
    def is_synthetic(self) -> bool:
        return self.format == "synthetic"

    @property
    def has_truth(self) -> bool:
        """Whether the dataset says where truth is (a generic dataset without 'label:' has none)."""
        return self.format != "generic" or bool(self.entry.get("label"))

    @property
    def on_invalid(self) -> str:
        return self.entry["on_invalid"]

    @property
    def synthetic(self) -> Mapping[str, Any]:
        return self.entry["synthetic"]

    def _selected(self, names: list[str]) -> list[str]:
        wanted = self.entry.get("subjects")
        excluded = set(self.entry.get("exclude", []))
        chosen = [n for n in names if (wanted is None or n in wanted) and n not in excluded]
        return chosen

    def synthetic_subjects(self) -> list[str]:
        """Names of the generated subjects (known from the config alone)."""
        return self._selected(synthetic_subject_ids(self.synthetic["kind"], self.synthetic["n_subjects"]))

    def synthetic_files(self, subject: str) -> SubjectFiles:
        return synthetic_subject_files(self.synthetic["kind"], self.root, subject)

    def discover(self) -> list[SubjectFiles]:
        """The selected subjects' files (by file names only; nothing is opened).

        For the synthetic cohort, the paths the generator writes (present or not).
        """
        if self.is_synthetic:
            return [self.synthetic_files(s) for s in self.synthetic_subjects()]
        if not self.root.is_dir():
            raise ConfigError(
                f"dataset {self.name!r}: root folder {self.root} not found; set 'root:' to the folder holding the data"
            )
        if self.format == "generic":
            found = discover_generic(self.root, self.modalities, self.entry["images"], self.entry.get("label"),
                                     self.entry.get("mask"))
        else:
            found = FORMATS[self.format].discover(self.root, self.modalities)
            if mask := self.entry.get("mask"):
                found = [replace(s, mask=self.root / mask.format(subject=s.subject)) for s in found]
        names = [s.subject for s in found]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"dataset {self.name!r}: subject names found twice below {self.root}: {duplicates}")
        keep = set(self._selected(names))
        return [s for s in found if s.subject in keep]

    def missing_listed_subjects(self, found: list[SubjectFiles]) -> list[str]:
        """Subjects named under ``subjects:`` that discovery did not find."""
        names = {s.subject for s in found}
        return [s for s in self.entry.get("subjects") or [] if s not in names]


def dataset_from_config(name: str, entry: Mapping[str, Any], results_dir: Path = RESULTS_DIR) -> Dataset:
    """Build a :class:`Dataset` from a validated config entry, checking what the schema cannot."""
    fmt = entry["format"]

    def fail(message: str) -> ConfigError:
        return ConfigError(f"dataset {name!r} (format {fmt}): {message}")

    if fmt == "synthetic":
        for key in ("root", "images", "label", "mask", "modalities"):
            if key in entry:
                raise fail(f"'{key}:' does not apply to the built-in synthetic cohort; remove it")
        kind = SYNTHETIC_KINDS[entry["synthetic"]["kind"]]
        root = results_dir / name / "raw"
        modalities = kind["modalities"]
        default_labels = kind["labels"]
    else:
        if "synthetic" in entry:
            raise fail("'synthetic:' applies only to format: synthetic; remove it")
        root = Path(entry["root"]).expanduser()
        if fmt == "generic":
            images = entry["images"]
            if "modalities" in entry:
                modalities = tuple(entry["modalities"])
            elif isinstance(images, Mapping):
                modalities = tuple(images)
            else:
                raise fail("'modalities:' is missing: list the modalities in channel order (or give 'images:' as "
                           "one template per modality)")
            try:
                check_templates(image_templates(images, modalities),
                                {"label": entry.get("label"), "mask": entry.get("mask")})
            except DiscoveryError as err:
                raise fail(str(err)) from None
        else:
            if "images" in entry or "label" in entry:
                raise fail("'images:'/'label:' templates apply only to format: generic; remove them")
            preset = FORMATS[fmt].modalities
            modalities = tuple(entry.get("modalities") or preset)
            unknown = [m for m in modalities if m not in preset]
            if unknown:
                raise fail(f"modalities {unknown} are not in this format (it has {list(preset)})")
            if "mask" in entry and template_placeholders(entry["mask"]) != ["subject"]:
                raise fail(f"mask template {entry['mask']!r}: for a preset, give a path below root with "
                           "{subject} as its only placeholder")
        default_labels = FORMATS[fmt].labels
    try:
        scheme = scheme_from_config(entry.get("labels", default_labels), name=f"{name}-labels")
    except (ValueError, KeyError) as err:
        raise fail(f"labels: {err}") from err
    split = entry.get("split", {})
    fractions = split_fractions(split)
    if "file" not in split and not split.get("folds") and sum(fractions.values()) <= 0:
        raise fail("split fractions are all 0; give train/val/test fractions or a split file")
    if split.get("folds") and not 0 <= fractions["test"] < 1:
        raise fail("with folds, the test fraction (held out of every fold) must be below 1")
    try:
        preprocessing = resolve_settings(
            name, fmt, modalities, entry.get("preprocessing", {}),
            entry["synthetic"]["spacing_mm"] if fmt == "synthetic" else None, has_mask="mask" in entry,
        )
    except PreprocessingConfigError as err:
        raise ConfigError(str(err)) from None
    return Dataset(name, fmt, root, modalities, scheme, entry, preprocessing)


def datasets_from_config(config: Mapping[str, Any], results_dir: Path = RESULTS_DIR) -> dict[str, Dataset]:
    """All datasets of a validated config, by name, each preprocessed as the models applied to it from other
    datasets or model files were trained (:mod:`lesionseg.datasets.applied`)."""
    from lesionseg.datasets.applied import resolve_applied

    base = {name: dataset_from_config(name, entry, results_dir) for name, entry in config["datasets"].items()}
    return resolve_applied(config, base)
