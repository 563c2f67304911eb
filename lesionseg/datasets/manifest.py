"""The subject manifest: who is in a dataset, in which split, and where their files are.

``results/{dataset}/subjects.tsv`` lists the valid subjects (subject, split, one
path column per modality, label); ``invalid_subjects.tsv`` lists every problem
found. Validation reads every image, so results are cached per subject by file
size and modification time: a re-run re-reads only subjects whose files changed.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from lesionseg.datasets import SUBJECT_ID, Dataset
from lesionseg.datasets.formats import SubjectFiles
from lesionseg.datasets.splits import assign_splits, fold_name, split_fractions
from lesionseg.datasets.validation import PROBLEM_FIELDS, Problem, validate_subject
from lesionseg.io import atomic_path

log = logging.getLogger(__name__)

LABEL_COLUMN = "label"
VALIDATION_CACHE = "results/{dataset}/.validation-cache.json"  # shared by rule manifest and `lesionseg check`
MASK_COLUMN = "brain_mask"


@dataclass
class Manifest:
    """Valid subjects with their split, and the problems of the others."""

    dataset: Dataset
    subjects: list[SubjectFiles]
    splits: dict[str, str]
    problems: list[Problem]

    @property
    def invalid_subjects(self) -> list[str]:
        return sorted({p.subject for p in self.problems})

    def split_counts(self) -> dict[str, int]:
        """Subjects per split (``fold0`` ... instead of train / val with folds)."""
        counts = {"train": 0, "val": 0, "test": 0} if not self.dataset.entry["split"].get("folds") else \
            {**{fold_name(k): 0 for k in range(self.dataset.entry["split"]["folds"])}, "test": 0}
        for s in self.subjects:
            counts[self.splits[s.subject]] += 1
        return counts


def _file_signature(files: SubjectFiles) -> list:
    paths = [*files.images.values(), files.label, files.mask]
    signature = []
    for path in paths:
        if path is None:
            signature.append(None)
            continue
        try:
            stat = os.stat(path)
            signature.append([str(path), stat.st_size, stat.st_mtime_ns])
        except OSError:
            signature.append([str(path), None, None])
    return signature


def _naming_problems(dataset: Dataset, files: SubjectFiles) -> list[Problem]:
    if SUBJECT_ID.match(files.subject):
        return []
    return [
        Problem(
            dataset.name,
            files.subject,
            str(next((p for p in files.images.values() if p), dataset.root)),
            "subject name has characters other than letters, digits, '.', '_' and '-'",
            "Output files are named after subjects: rename the subject's folder/files in a copy of the data.",
        )
    ]


def used_files(dataset: Dataset, files: SubjectFiles) -> SubjectFiles:
    """``files`` without the brain mask when the dataset's skull-strip method does not use it."""
    if dataset.preprocessing["skull_strip"]["method"] == "given":
        return files
    return replace(files, mask=None)


def validate_subjects(
    dataset: Dataset,
    subjects: Sequence[SubjectFiles],
    threads: int = 1,
    cache_path: Path | None = None,
    progress: bool = True,
) -> list[Problem]:
    """Problems of all ``subjects``, validated ``threads`` at a time, reusing cached results."""
    cache: dict = {}
    if cache_path and cache_path.is_file():
        try:
            cache = json.loads(cache_path.read_text())
        except ValueError:
            cache = {}
    settings = dataset.preprocessing
    checks = {"reference": settings["reference"], "coregistered": settings["coregister"]["enabled"],
              "brain_volume_ml": tuple(settings["skull_strip"]["brain_volume_ml"])}
    settings_key = json.dumps([dataset.scheme.describe(), checks], sort_keys=True)

    def check(files: SubjectFiles) -> list[Problem]:
        files = used_files(dataset, files)
        key = json.dumps([settings_key, _file_signature(files)])
        cached = cache.get(files.subject)
        if cached and cached["key"] == key:
            return [Problem(**p) for p in cached["problems"]]
        problems = _naming_problems(dataset, files) + validate_subject(dataset.name, files, dataset.scheme,
                                                                       **checks)
        cache[files.subject] = {"key": key, "problems": [p.as_row() for p in problems]}
        return problems

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(
            tqdm(pool.map(check, subjects), total=len(subjects), desc=f"validating {dataset.name}", unit="subject",
                 disable=not progress)
        )
    if cache_path:
        with atomic_path(cache_path) as tmp:
            tmp.write_text(json.dumps(cache))
    return [p for problems in results for p in problems]


def build_manifest(
    dataset: Dataset, threads: int = 1, cache_path: Path | None = None, progress: bool = True
) -> Manifest:
    """Discover, validate and split a dataset's subjects."""
    found = dataset.discover()
    problems = [
        Problem(dataset.name, s, str(dataset.root), "listed under 'subjects:' but not found",
                "Check the subject's name and the dataset's root and format.")
        for s in dataset.missing_listed_subjects(found)
    ]
    if not found:
        problems.append(Problem(dataset.name, "-", str(dataset.root), f"no subjects found for format {dataset.format}",
                                "Check 'root:' and 'format:' (and the 'images:' template for generic datasets)."))
    problems += validate_subjects(dataset, found, threads, cache_path, progress)
    invalid = {p.subject for p in problems}
    valid = [s for s in found if s.subject not in invalid]
    split = dataset.entry["split"]
    splits = assign_splits(
        [s.subject for s in valid],
        [s.subject for s in valid if s.label is not None],
        split_fractions(split),
        split.get("seed", 0),
        split.get("file"),
        split.get("folds", 0),
    )
    manifest = Manifest(dataset, valid, splits, problems)
    log.info("%s: %d subjects found, %d valid, splits %s", dataset.name, len(found), len(valid),
             manifest.split_counts())
    return manifest


def write_manifest(path: str | Path, manifest: Manifest) -> None:
    """``subjects.tsv``: subject, split, one column per modality (in channel order), label, brain mask.

    Empty label: no truth; empty brain mask: the skull-strip step makes one.
    """
    columns = ["subject", "split", *manifest.dataset.modalities, LABEL_COLUMN, MASK_COLUMN]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for s in manifest.subjects:
            mask = used_files(manifest.dataset, s).mask
            writer.writerow([s.subject, manifest.splits[s.subject], *(str(s.images[m]) for m in
                            manifest.dataset.modalities), str(s.label) if s.label else "", str(mask) if mask else ""])


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """Rows of a ``subjects.tsv`` (an empty label means the subject has no truth)."""
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def write_problems(path: str | Path, problems: Sequence[Problem]) -> None:
    """A TSV of problems (header only when there are none)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PROBLEM_FIELDS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(p.as_row() for p in problems)


def format_problems(problems: Sequence[Problem]) -> str:
    """Problems as an aligned plain-text table, for terminals and logs."""
    rows = [("dataset", "subject", "file", "problem", "what to do")] + [
        (p.dataset, p.subject, p.file, p.problem, p.hint) for p in problems
    ]
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)) for row in rows
    )
