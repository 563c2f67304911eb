"""Which subjects a page of a whole cohort shows as pictures, so that the page stays small at any cohort size.

A small cohort (at most :attr:`Embedding.all_up_to` subjects) has every subject's pictures embedded. A larger
one has a bounded set: the subjects most worth a look (the lowest Dice per region on the per-subject page, the
most unusual brain boxes on the QC page) and a fixed sample of the others. The sample is the ``sample``
subjects whose id has the smallest SHA-256 digest: it does not depend on the results, is the same on every
machine and run (Python's ``hash`` is salted per process), and a new subject changes it only by taking the
place of one member, when its own digest is smaller. Every picture stays a file beside the report.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lesionseg.config import load_schema
from lesionseg.reporting.tables import method_order, scored_rows


@dataclass(frozen=True)
class Embedding:
    """How many subjects' pictures a page of a whole cohort embeds: the config's ``report:`` entry, whose
    defaults the schema declares (schemas/config.schema.yaml; :meth:`default`)."""

    all_up_to: int
    """A cohort of at most this many subjects has every subject's pictures embedded."""
    worst: int
    """Subjects shown for each criterion of a larger cohort: per region, the lowest Dice; per dataset, the most
    unusual brain boxes."""
    sample: int
    """Subjects of the fixed sample of a larger cohort (:func:`fixed_sample`)."""

    @classmethod
    def from_config(cls, report: Mapping[str, int]) -> Embedding:
        """From the config's ``report:`` entry (its defaults filled in)."""
        return cls(int(report["embed_all_up_to"]), int(report["worst"]), int(report["sample"]))

    @classmethod
    def default(cls) -> Embedding:
        """The schema's defaults."""
        keys = load_schema()["properties"]["report"]["properties"]
        return cls.from_config({name: key["default"] for name, key in keys.items()})

    def embeds_all(self, n_subjects: int) -> bool:
        return n_subjects <= self.all_up_to


def sample_key(subject: str) -> str:
    """The SHA-256 digest of a subject's id, which orders the cohort for :func:`fixed_sample`."""
    return hashlib.sha256(subject.encode("utf-8")).hexdigest()


def fixed_sample(subjects: Sequence[str], n: int) -> list[str]:
    """The ``n`` subjects with the smallest :func:`sample_key`, in the order of ``subjects``."""
    chosen = set(heapq.nsmallest(n, set(subjects), key=sample_key))
    return [s for s in subjects if s in chosen]


@dataclass(frozen=True)
class LowestDice:
    """The subjects with the lowest Dice of one region, by the method with the highest mean Dice of it."""

    region: str
    method: str
    subjects: list[tuple[str, float]]
    """(subject, Dice), lowest first."""


def lowest_dice(results: pd.DataFrame, regions: Sequence[str], n: int,
                subjects: Collection[str] | None = None) -> list[LowestDice]:
    """Per region (in the order of ``regions``), the ``n`` subjects with the lowest Dice of the region's best
    method: the one with the highest mean Dice of that region over the subjects it scored (the first in method
    order on a tie). Only subjects with truth, and of ``subjects`` if given, count; ties in Dice go by subject id.
    A region that no method scores is left out."""
    scored = scored_rows(results)
    scored = scored[scored["dice"].notna()]
    if subjects is not None:
        scored = scored[scored["subject"].isin(set(subjects))]
    lowest = []
    for region in regions:
        rows = scored[scored["region"].astype(str) == region]
        if rows.empty:
            continue
        methods = rows["method"].astype(str)
        means = rows.groupby(methods)["dice"].mean()
        best = max(method_order(rows), key=lambda m: means[m])
        worst = rows[methods == best].sort_values(["dice", "subject"], kind="stable").head(n)
        lowest.append(LowestDice(region, best, [(s, float(d)) for s, d in zip(worst["subject"], worst["dice"],
                                                                               strict=True)]))
    return lowest


def most_unusual(values: Mapping[str, float], n: int) -> list[str]:
    """The ``n`` subjects whose (positive) value is furthest from the median on a log scale (twice the median is
    as unusual as half of it), most unusual first; ties by subject id. Non-finite values are left out."""
    finite = {s: v for s, v in values.items() if np.isfinite(v) and v > 0}
    if not finite:
        return []
    median = float(np.median(list(finite.values())))
    return sorted(finite, key=lambda s: (-abs(np.log(finite[s] / median)), s))[:n]


def shown_subjects(subjects: Sequence[str], embedding: Embedding,
                   notable: Sequence[tuple[str, str]] = ()) -> dict[str, list[str]]:
    """Subject -> why its pictures are shown, in the order they are shown.

    A cohort of at most ``embedding.all_up_to`` subjects: every subject, in order, without a reason. A larger one:
    the ``notable`` subjects of the cohort ((subject, reason) pairs, in their order; a subject once, with all its
    reasons), then those of the :func:`fixed_sample` not among them (reason ``fixed sample``).
    """
    if embedding.embeds_all(len(subjects)):
        return {s: [] for s in subjects}
    cohort = set(subjects)
    shown: dict[str, list[str]] = {}
    for subject, reason in notable:
        if subject in cohort:
            shown.setdefault(subject, []).append(reason)
    for subject in fixed_sample(subjects, embedding.sample):
        shown.setdefault(subject, []).append("fixed sample")
    return shown
