"""Layout presets: where each release keeps its images and its truth.

A format turns a dataset root into a list of :class:`SubjectFiles`; it only looks
at names (no image is opened), so discovery stays cheap. Three layout families
cover the supported releases (exact names in anchors.md section 4):

- *prefixed*: ``<subject>/<subject><sep><key>.nii.gz`` (BraTS 2017-2021, BraTS 2023+),
  optionally below grade folders (``HGG/``, ``LGG/``);
- *VSD*: ``<case>/VSD.Brain.XX.O.MR_<Tag>.<id>/VSD.Brain.XX.O.MR_<Tag>.<id>.<ext>`` with
  truth in ``VSD.Brain*.XX.O.OT.<id>`` (BRATS 2013/2015 ``.mha``, ISLES 2015 ``.nii``);
- *generic*: path templates with ``{subject}`` and ``{modality}`` from the config.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lesionseg.io import NIFTI_SUFFIXES, image_suffix


class DiscoveryError(ValueError):
    """The dataset root or its layout does not match the configured format."""


@dataclass(frozen=True)
class SubjectFiles:
    """The files of one subject; a modality whose file was not found maps to ``None``."""

    subject: str
    images: dict[str, Path | None]
    label: Path | None = None
    # Files a format knows about beside the inputs (e.g. a synthetic subject's true brain mask).
    extras: dict[str, Path] = field(default_factory=dict)
    # Where each modality was looked for, so a missing file can be reported precisely.
    expected: dict[str, Path] = field(default_factory=dict)


Discover = Callable[[Path, Sequence[str]], list[SubjectFiles]]


@dataclass(frozen=True)
class FormatPreset:
    """A layout preset: its modalities (in channel order), default label scheme and discovery."""

    name: str
    modalities: tuple[str, ...]
    labels: str
    discover: Discover | None
    description: str


def _find_file(stem: Path, suffixes: Sequence[str]) -> Path | None:
    return next((stem.with_name(stem.name + s) for s in suffixes if stem.with_name(stem.name + s).is_file()), None)


# --- prefixed layout (BraTS 2017-2023) -------------------------------------------------


def prefixed_path(root: Path, subject: str, key: str, sep: str, suffix: str = ".nii.gz") -> Path:
    """``root/<subject>/<subject><sep><key><suffix>``: where a prefixed layout keeps a file."""
    return root / subject / f"{subject}{sep}{key}{suffix}"


def _is_prefixed_subject_dir(folder: Path, keys: Sequence[str], sep: str) -> bool:
    return any(_find_file(folder / f"{folder.name}{sep}{key}", NIFTI_SUFFIXES) for key in keys)


def _discover_prefixed(root: Path, modalities: Sequence[str], sep: str, label_key: str) -> list[SubjectFiles]:
    keys = [*modalities, label_key]
    folders: list[Path] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if _is_prefixed_subject_dir(child, keys, sep):
            folders.append(child)
        else:  # grade folders (HGG/LGG) of BraTS 2017-2019
            folders.extend(
                g for g in sorted(p for p in child.iterdir() if p.is_dir()) if _is_prefixed_subject_dir(g, keys, sep)
            )
    subjects = []
    for folder in folders:
        name = folder.name
        images = {m: _find_file(folder / f"{name}{sep}{m}", NIFTI_SUFFIXES) for m in modalities}
        label = _find_file(folder / f"{name}{sep}{label_key}", NIFTI_SUFFIXES)
        extras = {}
        mask = _find_file(folder / f"{name}{sep}brainmask", NIFTI_SUFFIXES)
        if mask:
            extras["brain_mask"] = mask
        expected = {m: prefixed_path(folder.parent, name, m, sep) for m in modalities}
        subjects.append(SubjectFiles(name, images, label, extras, expected))
    return subjects


# --- VSD layout (BRATS 2013/2015, ISLES 2015) -------------------------------------------

_VSD_IMAGE = re.compile(r"^VSD\.Brain\.XX\.O\.MR_(?P<tag>[A-Za-z0-9]+)\.(?P<id>\d+)$")
_VSD_TRUTH = re.compile(r"^VSD\.Brain(_\d+more)?\.XX\.O\.OT\.(?P<id>\d+)$")
_VSD_MAX_DEPTH = 4


def vsd_path(root: Path, case: str, tag: str, image_id: int, suffix: str) -> Path:
    """Where the VSD layout keeps a modality (``tag`` e.g. ``Flair``) or, with tag ``OT``, the truth."""
    prefix = "VSD.Brain.XX.O.OT" if tag == "OT" else f"VSD.Brain.XX.O.MR_{tag}"
    folder = f"{prefix}.{image_id}"
    return root / case / folder / f"{folder}{suffix}"


def _vsd_image_in(folder: Path, suffixes: Sequence[str]) -> Path | None:
    exact = _find_file(folder / folder.name, suffixes)
    if exact:
        return exact
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and image_suffix(p) in suffixes)
    return candidates[0] if len(candidates) == 1 else None


def _vsd_cases(root: Path) -> list[Path]:
    """Folders holding VSD.* sub-folders, searched a few levels below ``root``."""
    cases, frontier = [], [root]
    for _ in range(_VSD_MAX_DEPTH):
        next_frontier = []
        for folder in frontier:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
            if any(_VSD_IMAGE.match(c.name) or _VSD_TRUTH.match(c.name) for c in children):
                cases.append(folder)
            else:
                next_frontier.extend(children)
        frontier = next_frontier
    return sorted(cases)


def _discover_vsd(
    root: Path, modalities: Sequence[str], tags: Mapping[str, str], suffixes: Sequence[str]
) -> list[SubjectFiles]:
    subjects = []
    for case in _vsd_cases(root):
        images: dict[str, Path | None] = {m: None for m in modalities}
        label = None
        wanted = {tags[m]: m for m in modalities}
        extras = {}
        for child in sorted(p for p in case.iterdir()):
            if child.is_file() and child.name.startswith("brainmask"):
                extras["brain_mask"] = child
            if not child.is_dir():
                continue
            image_match = _VSD_IMAGE.match(child.name)
            if image_match and image_match["tag"] in wanted:
                images[wanted[image_match["tag"]]] = _vsd_image_in(child, suffixes)
            elif _VSD_TRUTH.match(child.name):
                label = _vsd_image_in(child, suffixes)
        # Case folders are not unique across grade folders (HG/0001 and LG/0001).
        subject = "_".join(case.relative_to(root).parts) if case != root else case.name
        expected = {m: case / f"VSD.Brain.XX.O.MR_{tags[m]}.<id>" for m in modalities}
        subjects.append(SubjectFiles(subject, images, label, extras, expected))
    return subjects


# --- generic layout ---------------------------------------------------------------------


def _template_regex(template: str) -> re.Pattern[str]:
    pattern, seen_subject = "", False
    for literal, name in re.findall(r"([^{]*)(?:\{(\w+)\})?", template):
        pattern += re.escape(literal)
        if name == "subject":
            pattern += "(?P=subject)" if seen_subject else r"(?P<subject>[^/]+)"
            seen_subject = True
        elif name:
            raise DiscoveryError(f"path template {template!r}: unknown placeholder {{{name}}}")
    return re.compile(f"^{pattern}$")


def discover_generic(
    root: Path, modalities: Sequence[str], images: str, label: str | None = None
) -> list[SubjectFiles]:
    """Subjects from path templates such as ``'{subject}/{subject}_{modality}.nii.gz'``.

    A subject is any match of the first modality's path; the other modalities and
    the label are looked up by filling in the templates.
    """
    if "{subject}" not in images or "{modality}" not in images:
        raise DiscoveryError(f"images template {images!r} must contain {{subject}} and {{modality}}")
    first = images.replace("{modality}", modalities[0])
    regex = _template_regex(first)
    glob = re.sub(r"\{subject\}", "*", first)
    found = sorted(
        {m["subject"] for p in root.glob(glob) if (m := regex.match(p.relative_to(root).as_posix()))}
    )
    subjects = []
    for subject in found:
        paths = {m: root / images.format(subject=subject, modality=m) for m in modalities}
        label_path = root / label.format(subject=subject) if label else None
        subjects.append(
            SubjectFiles(
                subject,
                {m: p if p.is_file() else None for m, p in paths.items()},
                label_path if label_path and label_path.is_file() else None,
                expected=paths,
            )
        )
    return subjects


# --- the presets ------------------------------------------------------------------------

_BRATS2013_TAGS = {"flair": "Flair", "t1": "T1", "t1c": "T1c", "t2": "T2"}
ISLES2015_TAGS = {"flair": "Flair", "t1": "T1", "t2": "T2", "dwi": "DWI"}


def _discover_brats_vsd(root: Path, modalities: Sequence[str]) -> list[SubjectFiles]:
    return _discover_vsd(root, modalities, _BRATS2013_TAGS, (".mha", ".mhd", *NIFTI_SUFFIXES))


FORMATS: dict[str, FormatPreset] = {
    "brats2013": FormatPreset(
        "brats2013",
        ("flair", "t1", "t1c", "t2"),
        "brats2013",
        _discover_brats_vsd,
        "BRATS 2013: VSD.Brain.XX.O.MR_<mod>.<id>/*.mha case folders, below HG/LG",
    ),
    "brats2015": FormatPreset(
        "brats2015",
        ("flair", "t1", "t1c", "t2"),
        "brats2013",
        _discover_brats_vsd,
        "BRATS 2015: VSD.Brain.XX.O.MR_<mod>.<id>/*.mha case folders, below HGG/LGG",
    ),
    "brats2021": FormatPreset(
        "brats2021",
        ("flair", "t1", "t1ce", "t2"),
        "brats2021",
        lambda root, mods: _discover_prefixed(root, mods, "_", "seg"),
        "BraTS 2017-2021: <id>/<id>_{flair,t1,t1ce,t2,seg}.nii.gz (2017-2019 below HGG/LGG)",
    ),
    "brats2023": FormatPreset(
        "brats2023",
        ("t2f", "t1n", "t1c", "t2w"),
        "brats2023",
        lambda root, mods: _discover_prefixed(root, mods, "-", "seg"),
        "BraTS 2023+: BraTS-GLI-xxxxx-xxx/BraTS-GLI-xxxxx-xxx-{t1n,t1c,t2w,t2f,seg}.nii.gz",
    ),
    "isles2015": FormatPreset(
        "isles2015",
        ("flair", "t1", "t2", "dwi"),
        "binary",
        lambda root, mods: _discover_vsd(root, mods, ISLES2015_TAGS, (*NIFTI_SUFFIXES, ".mha")),
        "ISLES 2015 SISS: <case>/VSD.Brain.XX.O.MR_{Flair,T1,T2,DWI}.<id>/*.nii, truth VSD.Brain.XX.O.OT.<id>",
    ),
    # Generic and synthetic discovery need more than (root, modalities); see lesionseg.datasets.
    "generic": FormatPreset("generic", (), "binary", None, "path templates given in the config"),
    "synthetic": FormatPreset("synthetic", (), "brats2013", None, "the built-in synthetic cohort"),
}
