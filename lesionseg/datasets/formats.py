"""Layout presets: where each release keeps its images and its truth.

A format turns a dataset root into a list of :class:`SubjectFiles`; it only looks
at names (no image is opened), so discovery stays cheap. These layout families
cover the supported releases (exact names in anchors.md section 4):

- *prefixed*: ``<subject>/<subject><sep><key>.nii.gz`` (BraTS 2017-2021, BraTS 2023-2024),
  optionally below grade or sub-challenge folders (``HGG/``, ``LGG/``);
- *VSD*: ``<case>/VSD.Brain.XX.O.MR_<Tag>.<id>/VSD.Brain.XX.O.MR_<Tag>.<id>.<ext>`` with
  truth in ``VSD.Brain*.XX.O.OT.<id>`` (BRATS 2013/2015 ``.mha``, ISLES 2015 ``.nii``);
- *BIDS*: ``sub-<label>/ses-<label>/<datatype>/sub-<label>_ses-<label>_<suffix>.nii.gz``
  (ISLES 2022 with its truth below ``derivatives/``, ATLAS v2.0);
- *MSSEG 2016*: ``<patient>/Preprocessed_Data/<Mod>_preprocessed.nii.gz``, truth
  ``<patient>/Masks/Consensus.nii.gz``, optionally below centre folders;
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
    # The brain mask the dataset ships (config key ``mask:``), if any.
    mask: Path | None = None


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


def _folders_below(root: Path, is_wanted: Callable[[Path], bool], max_depth: int) -> list[Path]:
    """The folders ``is_wanted`` accepts, from ``root`` itself down to ``max_depth`` levels below it.

    The search does not look inside an accepted folder.
    """
    found, frontier = [], [root]
    for _ in range(max_depth + 1):
        next_frontier = []
        for folder in frontier:
            if is_wanted(folder):
                found.append(folder)
            else:
                next_frontier.extend(sorted(p for p in folder.iterdir() if p.is_dir()))
        frontier = next_frontier
    return sorted(found)


def _name_below(folder: Path, root: Path) -> str:
    """A subject name unique below ``root``: the folders from ``root`` down to ``folder``, joined by ``_``.

    Case folders repeat across grade or centre folders (``HG/0001`` and ``LG/0001``).
    """
    return "_".join(folder.relative_to(root).parts) if folder != root else folder.name


# --- prefixed layout (BraTS 2017-2024) -------------------------------------------------


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
_VSD_MAX_DEPTH = 3  # levels below root searched for case folders


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


def _is_vsd_case(folder: Path) -> bool:
    """Whether ``folder`` holds VSD.* sub-folders."""
    return any((_VSD_IMAGE.match(p.name) or _VSD_TRUTH.match(p.name)) and p.is_dir() for p in folder.iterdir())


def _discover_vsd(
    root: Path, modalities: Sequence[str], tags: Mapping[str, str], suffixes: Sequence[str]
) -> list[SubjectFiles]:
    subjects = []
    for case in _folders_below(root, _is_vsd_case, _VSD_MAX_DEPTH):
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
        expected = {m: case / f"VSD.Brain.XX.O.MR_{tags[m]}.<id>" for m in modalities}
        subjects.append(SubjectFiles(_name_below(case, root), images, label, extras, expected))
    return subjects


# --- BIDS layouts (ISLES 2022, ATLAS v2.0) ----------------------------------------------


def _bids_sessions(subject_folders: Sequence[Path]) -> list[tuple[str, Path]]:
    """(subject name, session folder) of each ``ses-*`` folder of the ``sub-*`` folders.

    A subject is named after its ``sub-*`` folder, with ``_ses-*`` appended when it has
    several sessions.
    """
    sessions = []
    for subject in subject_folders:
        folders = sorted(p for p in subject.iterdir() if p.is_dir() and p.name.startswith("ses-"))
        sessions.extend((f"{subject.name}_{s.name}" if len(folders) > 1 else subject.name, s) for s in folders)
    return sessions


def _bids_prefix(session: Path) -> str:
    """``sub-<label>_ses-<label>``, the start of every file name of a session."""
    return f"{session.parent.name}_{session.name}"


def _only_file_ending(folder: Path, ending: str) -> Path | None:
    """The NIfTI file of ``folder`` whose name ends with ``ending`` (None if there is none, or several)."""
    candidates = sorted(p for suffix in NIFTI_SUFFIXES for p in folder.glob(f"*{ending}{suffix}"))
    return candidates[0] if len(candidates) == 1 else None


# ISLES 2022: each modality's BIDS datatype folder and file suffixes (the Zenodo release
# writes "FLAIR", the organisers' README "flair").
_ISLES2022_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "dwi": ("dwi", ("dwi",)),
    "adc": ("dwi", ("adc",)),
    "flair": ("anat", ("FLAIR", "flair")),
}


def _isles2022_stems(session: Path, modality: str) -> list[Path]:
    """Where an ISLES 2022 image may be (without extension), in search order: in its
    datatype folder, then directly in the session folder."""
    datatype, suffixes = _ISLES2022_FILES[modality]
    prefix = _bids_prefix(session)
    return [folder / f"{prefix}_{suffix}" for folder in (session / datatype, session) for suffix in suffixes]


def _first_nifti(stems: Sequence[Path]) -> Path | None:
    """The first of ``stems`` that exists with a NIfTI extension."""
    return next((found for stem in stems if (found := _find_file(stem, NIFTI_SUFFIXES))), None)


def _discover_isles2022(root: Path, modalities: Sequence[str]) -> list[SubjectFiles]:
    """ISLES 2022: ``sub-*`` folders in ``root/rawdata/`` (as released) or in ``root``, truth in ``root/derivatives/``.

    Each session is one subject.
    """
    raw = root / "rawdata" if (root / "rawdata").is_dir() else root
    subject_folders = sorted(p for p in raw.iterdir() if p.is_dir() and p.name.startswith("sub-"))
    subjects = []
    for name, session in _bids_sessions(subject_folders):
        stems = {m: _isles2022_stems(session, m) for m in modalities}
        images = {m: _first_nifti(candidates) for m, candidates in stems.items()}
        expected = {m: candidates[0].with_name(f"{candidates[0].name}.nii.gz") for m, candidates in stems.items()}
        truth = root / "derivatives" / session.parent.name / session.name / f"{_bids_prefix(session)}_msk"
        subjects.append(SubjectFiles(name, images, _find_file(truth, NIFTI_SUFFIXES), expected=expected))
    return subjects


# ATLAS v2.0: how each modality's file name ends; the space entity before it is not fixed.
_ATLAS2_ENDINGS = {"t1": "_T1w"}
_ATLAS2_TRUTH_ENDING = "_label-L_desc-T1lesion_mask"
_ATLAS2_MAX_DEPTH = 3  # root/Training/R001/sub-r001s001


def _discover_atlas2(root: Path, modalities: Sequence[str]) -> list[SubjectFiles]:
    """ATLAS v2.0: ``sub-*`` folders below ``root`` (the release, ``Training/``, ``Testing/`` or a cohort folder)."""
    subject_folders = _folders_below(root, lambda folder: folder.name.startswith("sub-"), _ATLAS2_MAX_DEPTH)
    subjects = []
    for name, session in _bids_sessions(subject_folders):
        anat = session / "anat"
        images = {m: _only_file_ending(anat, _ATLAS2_ENDINGS[m]) for m in modalities}
        expected = {
            m: anat / f"{_bids_prefix(session)}_space-MNI152NLin2009aSym{_ATLAS2_ENDINGS[m]}.nii.gz"
            for m in modalities
        }
        label = _only_file_ending(anat, _ATLAS2_TRUTH_ENDING)
        subjects.append(SubjectFiles(name, images, label, expected=expected))
    return subjects


# --- MSSEG 2016 layout ------------------------------------------------------------------

_MSSEG2016_TAGS = {"flair": "FLAIR", "t1": "T1", "t2": "T2", "dp": "DP", "gado": "GADO"}
_MSSEG2016_MAX_DEPTH = 3  # root/Training/Center_01/Patient_01


def _is_msseg2016_patient(folder: Path) -> bool:
    """Whether ``folder`` is a patient's: it holds the folders this preset reads."""
    return (folder / "Preprocessed_Data").is_dir() or (folder / "Masks").is_dir()


def _discover_msseg2016(root: Path, modalities: Sequence[str]) -> list[SubjectFiles]:
    """MICCAI 2016 MSSEG: patient folders below ``root``, directly or below centre (and Training/Testing) folders."""
    subjects = []
    for patient in _folders_below(root, _is_msseg2016_patient, _MSSEG2016_MAX_DEPTH):
        stems = {m: patient / "Preprocessed_Data" / f"{_MSSEG2016_TAGS[m]}_preprocessed" for m in modalities}
        images = {m: _find_file(stem, NIFTI_SUFFIXES) for m, stem in stems.items()}
        expected = {m: stem.with_name(f"{stem.name}.nii.gz") for m, stem in stems.items()}
        label = _find_file(patient / "Masks" / "Consensus", NIFTI_SUFFIXES)
        subjects.append(SubjectFiles(_name_below(patient, root), images, label, expected=expected))
    return subjects


# --- generic layout ---------------------------------------------------------------------


PLACEHOLDER = re.compile(r"\{(\w+)\}")


def template_placeholders(template: str) -> list[str]:
    """The placeholders of a path template, in order of first appearance."""
    return list(dict.fromkeys(PLACEHOLDER.findall(template)))


def _template_regex(template: str) -> re.Pattern[str]:
    """A regex matching ``template``'s paths; each placeholder matches one path component, a repeat the same text."""
    pattern, seen = "", set()
    for literal, name in re.findall(r"([^{]*)(?:\{(\w+)\})?", template):
        pattern += re.escape(literal)
        if name:
            pattern += f"(?P={name})" if name in seen else f"(?P<{name}>[^/]+)"
            seen.add(name)
    return re.compile(f"^{pattern}$")


def image_templates(images: str | Mapping[str, str], modalities: Sequence[str]) -> dict[str, str]:
    """Path template of each modality: one template with ``{modality}``, or one template per modality."""
    if isinstance(images, str):
        if "{modality}" not in images:
            raise DiscoveryError(f"images template {images!r} must contain {{modality}} (or give one template "
                                 "per modality: images: {flair: ..., t1: ...})")
        return {m: images.replace("{modality}", m) for m in modalities}
    missing = [m for m in modalities if m not in images]
    if missing:
        raise DiscoveryError(f"images: no path template for modalities {missing}")
    return {m: images[m] for m in modalities}


def check_templates(templates: Mapping[str, str], others: Mapping[str, str | None]) -> None:
    """Every template names the subject, and uses only placeholders the first modality's template fills."""
    first_modality, first = next(iter(templates.items()))
    known = set(template_placeholders(first))
    for key, template in [*templates.items(), *others.items()]:
        if template is None:
            continue
        if "{subject}" not in template:
            raise DiscoveryError(f"path template {template!r} ({key}) must contain {{subject}}")
        unknown = [p for p in template_placeholders(template) if p not in known]
        if unknown:
            raise DiscoveryError(
                f"path template {template!r} ({key}) uses {unknown}, which the first modality's template "
                f"{first!r} ({first_modality}) does not fill; every placeholder must appear in it"
            )


def discover_generic(
    root: Path, modalities: Sequence[str], images: str | Mapping[str, str], label: str | None = None,
    mask: str | None = None,
) -> list[SubjectFiles]:
    """Subjects from path templates such as ``'{subject}/{subject}_{modality}.nii.gz'``.

    ``images`` is one template with ``{modality}`` or one per modality. A subject
    is any match of the first modality's template; placeholders other than
    ``{subject}`` (e.g. ``{split}`` in ``'{split}/{subject}/flair.nii.gz'``) match
    any one path component, and the other modalities, the label and the brain
    mask are looked up by filling in their templates with the same values.
    """
    templates = image_templates(images, modalities)
    check_templates(templates, {"label": label, "mask": mask})
    first = templates[modalities[0]]
    regex = _template_regex(first)
    glob = PLACEHOLDER.sub("*", first)
    # One match per subject file found; a subject found twice (e.g. in two {split} folders) is reported by the caller.
    matches = sorted((
        (found["subject"], found.groupdict()) for path in root.glob(glob)
        if (found := regex.match(path.relative_to(root).as_posix()))
    ), key=lambda match: (match[0], sorted(match[1].items())))
    subjects = []
    for subject, fields in matches:
        paths = {m: root / t.format(**fields) for m, t in templates.items()}
        label_path = root / label.format(**fields) if label else None
        mask_path = root / mask.format(**fields) if mask else None
        subjects.append(
            SubjectFiles(
                subject,
                {m: p if p.is_file() else None for m, p in paths.items()},
                label_path if label_path and label_path.is_file() else None,
                expected=paths,
                mask=mask_path,
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
        "BraTS 2023-2024: BraTS-{GLI,MEN,MET,PED,SSA}-xxxxx-xxx/<id>-{t1n,t1c,t2w,t2f,seg}.nii.gz (also below "
        "sub-challenge folders)",
    ),
    "isles2015": FormatPreset(
        "isles2015",
        ("flair", "t1", "t2", "dwi"),
        "binary",
        lambda root, mods: _discover_vsd(root, mods, ISLES2015_TAGS, (*NIFTI_SUFFIXES, ".mha")),
        "ISLES 2015 SISS: <case>/VSD.Brain.XX.O.MR_{Flair,T1,T2,DWI}.<id>/*.nii, truth VSD.Brain.XX.O.OT.<id>",
    ),
    "isles2022": FormatPreset(
        "isles2022",
        ("dwi", "adc", "flair"),
        "binary",
        _discover_isles2022,
        "ISLES 2022 (BIDS): [rawdata/]sub-strokecaseNNNN/ses-0001/{dwi,anat}/<sub>_<ses>_{dwi,adc,FLAIR}.nii.gz, "
        "truth derivatives/<sub>/<ses>/<sub>_<ses>_msk.nii.gz",
    ),
    "atlas2": FormatPreset(
        "atlas2",
        ("t1",),
        "binary",
        _discover_atlas2,
        "ATLAS v2.0 (BIDS): [Training|Testing/]R<NNN>/sub-r<NNN>s<NNN>/ses-1/anat/*_T1w.nii.gz, "
        "truth *_label-L_desc-T1lesion_mask.nii.gz",
    ),
    "msseg2016": FormatPreset(
        "msseg2016",
        ("flair", "t1", "t2", "dp", "gado"),
        "binary",
        _discover_msseg2016,
        "MICCAI 2016 MSSEG: [<centre>/]<patient>/Preprocessed_Data/{FLAIR,T1,T2,DP,GADO}_preprocessed.nii.gz "
        "(brain-extracted), truth Masks/Consensus.nii.gz",
    ),
    # Generic and synthetic discovery need more than (root, modalities); see lesionseg.datasets.
    "generic": FormatPreset("generic", (), "binary", None, "path templates given in the config"),
    "synthetic": FormatPreset("synthetic", (), "brats2013", None, "the built-in synthetic cohort"),
}
