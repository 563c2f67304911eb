"""Train / validation / test splits that never move a subject once assigned.

Each subject's split depends only on its own name and the seed (a hash mapped to
[0, 1) and cut at the cumulative fractions), so adding or removing other subjects
never changes it. A split file (TSV with columns ``subject`` and ``split``) fixes
the assignment by hand; subjects it does not list fall back to the hash.
Subjects without truth cannot be trained or validated on: they go to ``test``,
where they are segmented but not scored.

With k-fold cross-validation (``folds: k``), a labelled subject is in ``test``
(held out of every fold, by the same hash and the ``test`` fraction) or in
``fold0`` ... ``fold{k-1}`` (by a second hash): again a function of its own
name and the seed alone. The model of fold k trains on the other folds and is
validated on their subjects whose third hash is below the ``val`` fraction.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SPLITS = ("train", "val", "test")
FOLD_PREFIX = "fold"
DEFAULT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
# With folds every labelled subject not held out is in a fold, so nothing is held out unless asked for;
# `val` is the share of each fold model's training folds it is validated on.
DEFAULT_FOLD_FRACTIONS = {"train": 0.0, "val": 0.2, "test": 0.0}


def split_fractions(split: Mapping[str, Any]) -> dict[str, float]:
    """The train / val / test fractions of a ``split:`` entry, defaults filled in."""
    defaults = DEFAULT_FOLD_FRACTIONS if split.get("folds") else DEFAULT_FRACTIONS
    return {name: float(split.get(name, default)) for name, default in defaults.items()}


def hash_fraction(subject: str, seed: int, salt: str = "") -> float:
    """A uniform number in [0, 1) determined by ``(seed, subject)`` (and ``salt``) alone."""
    digest = hashlib.sha256(f"{seed}:{salt}{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def fold_name(fold: int) -> str:
    return f"{FOLD_PREFIX}{fold}"


def fold_of(split: str) -> int | None:
    """The fold of a split name (``fold2`` -> 2), None for train / val / test."""
    return int(split[len(FOLD_PREFIX):]) if split.startswith(FOLD_PREFIX) else None


def hash_fold(subject: str, folds: int, test_fraction: float, seed: int) -> str:
    """``test`` (held out of every fold) or the fold of a labelled subject."""
    if hash_fraction(subject, seed) < test_fraction:
        return "test"
    return fold_name(int(hash_fraction(subject, seed, "fold:") * folds))


def fold_validation(subjects: Iterable[str], fraction: float, seed: int) -> list[str]:
    """The validation subjects among a fold model's training subjects: those whose hash is below ``fraction``,
    or, when there is none, the one with the smallest hash (every model is validated)."""
    subjects = sorted(subjects)
    scores = {s: hash_fraction(s, seed, "val:") for s in subjects}
    chosen = [s for s in subjects if scores[s] < fraction]
    if not chosen and len(subjects) > 1 and fraction > 0:
        chosen = [min(subjects, key=scores.__getitem__)]
    return chosen


def hash_split(subject: str, fractions: Mapping[str, float], seed: int) -> str:
    """The split of ``subject`` for the given fractions (which need not sum to exactly 1)."""
    total = sum(fractions[s] for s in SPLITS)
    u, cumulative = hash_fraction(subject, seed) * total, 0.0
    for split in SPLITS:
        cumulative += fractions[split]
        if u < cumulative:
            return split
    return SPLITS[-1]


def read_split_file(path: str | Path) -> dict[str, str]:
    """``subject -> split`` from a TSV with a header ``subject<TAB>split``."""
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        if not reader.fieldnames or not {"subject", "split"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: a split file needs the columns 'subject' and 'split' (tab-separated)")
        assignment = {}
        for line, row in enumerate(reader, start=2):
            if row["split"] not in SPLITS and not (fold_of(row["split"]) is not None
                                                   and row["split"][len(FOLD_PREFIX):].isdigit()):
                raise ValueError(f"{path}, line {line}: split {row['split']!r} is not one of {', '.join(SPLITS)} "
                                 "(or fold0, fold1, ... with folds)")
            assignment[row["subject"]] = row["split"]
    return assignment


def assign_splits(
    subjects: Iterable[str],
    labelled: Iterable[str],
    fractions: Mapping[str, float],
    seed: int,
    split_file: str | Path | None = None,
    folds: int = 0,
) -> dict[str, str]:
    """Split of every subject: from ``split_file`` when it lists it, else by hash; unlabelled -> test.
    With ``folds``, labelled subjects go to ``test`` or a fold (``fold0`` ...)."""
    fixed = read_split_file(split_file) if split_file else {}
    labelled = set(labelled)

    def by_hash(subject: str) -> str:
        return hash_fold(subject, folds, fractions["test"], seed) if folds else hash_split(subject, fractions, seed)

    return {s: ("test" if s not in labelled else fixed.get(s) or by_hash(s)) for s in subjects}


class CohortSplits:
    """Which subjects of a dataset's manifest train, validate and test which model, computed once per manifest.

    The workflow asks for these lists once or more per job; deriving the folds anew each time made building the
    DAG quadratic in the cohort (five minutes for 1,000 subjects with 5 folds). Lists are returned as new lists in
    manifest order, so callers may change them.
    """

    def __init__(self, splits: Mapping[str, str], labelled: Iterable[str], split_entry: Mapping[str, Any]) -> None:
        """``splits``: subject -> split, in manifest order; ``labelled``: the subjects with truth; ``split_entry``:
        the dataset's ``split:`` (folds, val fraction, seed)."""
        self.splits = dict(splits)
        self.folds = int(split_entry.get("folds") or 0)
        labelled = set(labelled)
        self.labelled = [s for s in self.splits if s in labelled]
        self._by_split: dict[str, list[str]] = {}
        for subject, split in self.splits.items():
            self._by_split.setdefault(split, []).append(subject)
        self._labelled_by_split = {split: [s for s in subjects if s in labelled]
                                   for split, subjects in self._by_split.items()}
        fold_members = [self._labelled_by_split.get(fold_name(k), []) for k in range(self.folds)]
        self._out_of_fold = [s for members in fold_members for s in members]
        val_fraction, seed = split_fractions(split_entry)["val"], split_entry.get("seed", 0)
        self._fold_validation, self._fold_training = [], []
        for fold in range(self.folds):
            pool = [s for k, members in enumerate(fold_members) if k != fold for s in members]
            validation = fold_validation(pool, val_fraction, seed)
            chosen = set(validation)
            self._fold_validation.append(validation)
            self._fold_training.append([s for s in pool if s not in chosen])

    def subjects(self, split: str | None = None) -> list[str]:
        """Valid subjects, optionally of one split."""
        return list(self.splits) if split is None else list(self._by_split.get(split, []))

    def labelled_in(self, split: str) -> list[str]:
        """Labelled subjects of one split (``train``, ``val``, ``fold2`` ...)."""
        return list(self._labelled_by_split.get(split, []))

    def out_of_fold(self) -> list[str]:
        """Every labelled subject of the folds, fold by fold (each segmented by the model of its fold)."""
        return list(self._out_of_fold)

    def training(self, fold: int | None = None) -> list[str]:
        """Labelled subjects of the train split, or those fold ``fold``'s model trains on (the other folds, less
        its validation subjects)."""
        return self.labelled_in("train") if fold is None else list(self._fold_training[fold])

    def validation(self, fold: int | None = None) -> list[str]:
        """Labelled subjects of the val split, or fold ``fold``'s model's (a hashed share of the other folds). With
        folds and no ``fold``: every labelled subject of the folds, whose out-of-fold results choose the CRF
        parameters and the post-processing of the dataset's networks (as nnU-Net chooses its post-processing on
        the cross-validation)."""
        if fold is not None:
            return list(self._fold_validation[fold])
        return self.out_of_fold() if self.folds else self.labelled_in("val")
