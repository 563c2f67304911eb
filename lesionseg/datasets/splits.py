"""Train / validation / test splits that never move a subject once assigned.

Each subject's split depends only on its own name and the seed (a hash mapped to
[0, 1) and cut at the cumulative fractions), so adding or removing other subjects
never changes it. A split file (TSV with columns ``subject`` and ``split``) fixes
the assignment by hand; subjects it does not list fall back to the hash.
Subjects without truth cannot be trained or validated on: they go to ``test``,
where they are segmented but not scored.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

SPLITS = ("train", "val", "test")


def hash_fraction(subject: str, seed: int) -> float:
    """A uniform number in [0, 1) determined by ``(seed, subject)`` alone."""
    digest = hashlib.sha256(f"{seed}:{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


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
            if row["split"] not in SPLITS:
                raise ValueError(f"{path}, line {line}: split {row['split']!r} is not one of {', '.join(SPLITS)}")
            assignment[row["subject"]] = row["split"]
    return assignment


def assign_splits(
    subjects: Iterable[str],
    labelled: Iterable[str],
    fractions: Mapping[str, float],
    seed: int,
    split_file: str | Path | None = None,
) -> dict[str, str]:
    """Split of every subject: from ``split_file`` when it lists it, else by hash; unlabelled -> test."""
    fixed = read_split_file(split_file) if split_file else {}
    labelled = set(labelled)
    return {
        s: ("test" if s not in labelled else fixed.get(s) or hash_split(s, fractions, seed)) for s in subjects
    }
