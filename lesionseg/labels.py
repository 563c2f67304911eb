"""Label schemes: raw label values -> network classes, and evaluation regions.

A scheme is data, declared once here (or in the config as an explicit mapping)
and used by validation, sampling, training, inference and evaluation alike:

- ``classes`` (ordered): the network's output classes; class 0 is background and
  holds raw value 0. Each class lists the raw values it stands for, and a
  segmentation is written back with the first raw value of each class.
- ``regions``: the evaluation regions, each a set of raw values (BraTS whole
  tumour / tumour core / enhancing tumour; or a single lesion region).
- one colour per class and per region, used by every figure; for each region
  the modalities that show it best, in order of preference (overlays);
- the lesion-wise evaluation's parameters (:class:`LesionwiseSettings`: the
  BraTS 2023+ challenge's for the BraTS schemes).

Values of the BraTS releases are those of anchors.md section 4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


PALETTE: tuple[str, ...] = ("#e6194b", "#3cb44b", "#4363d8", "#ffe119", "#911eb4", "#f58231", "#42d4f4",
                            "#f032e6", "#bfef45", "#fabed4")
"""Colours given, in order, to the classes and regions of a scheme that declares none (distinct on grey images)."""

REGION_MODALITIES: dict[str, tuple[str, ...]] = {
    "WT": ("flair", "t2f", "t2", "t2w"),
    "TC": ("t1c", "t1ce", "t1gd", "t1post", "t2", "t2w"),
    "ET": ("t1c", "t1ce", "t1gd", "t1post"),
    "RC": ("t1c", "t1ce", "t1gd", "t1", "t1n"),
    "lesion": ("flair", "t2f", "dwi", "t2", "t2w", "t1", "t1w", "t1n"),
}
"""For each usual region name, the modalities (by name, lower case) that show it best, in order: whole tumour
and oedema on FLAIR, enhancing tumour and core on post-contrast T1 (radiological convention)."""


REGION_NAMES: dict[str, str] = {
    "WT": "whole tumour",
    "TC": "tumour core",
    "ET": "enhancing tumour",
    "RC": "resection cavity",
}
"""What the usual region abbreviations stand for (table legends)."""


@dataclass(frozen=True)
class LesionwiseSettings:
    """Parameters of the lesion-wise evaluation (:mod:`lesionseg.evaluation.lesionwise`).

    Lesions are the ``connectivity``-connected components of a region. Truth lesions whose dilations by
    ``dilation_iterations`` (18-connected structuring element) touch are merged into one lesion, and a
    predicted component counts for a truth lesion when it overlaps that lesion's dilation. Truth lesions of at
    most ``min_truth_voxels`` voxels are not scored; a predicted component that matches no truth lesion scores
    Dice 0 and HD95 ``false_positive_hd95_mm``.
    """

    dilation_iterations: int = 0
    min_truth_voxels: int = 0
    false_positive_hd95_mm: float = 374.0
    connectivity: int = 26


BRATS_LESIONWISE = LesionwiseSettings(dilation_iterations=3, min_truth_voxels=50)
"""The BraTS 2023+ challenge's lesion-wise parameters (glioma: dilation 3, lesions of up to 50 voxels ignored,
HD95 374 mm for a false positive)."""


@dataclass(frozen=True)
class LabelClass:
    """One network class, the raw label values it stands for, its colour in figures, and the names the same
    tissue has in other schemes (a model trained on one scheme is applied to data of another by class name)."""

    name: str
    raw_values: tuple[int, ...]
    aliases: tuple[str, ...] = ()
    colour: str = "#000000"

    def matches(self, other: LabelClass) -> bool:
        """Whether ``other`` (of another scheme) is the same tissue: same name, or one's alias is the other."""
        return self.name == other.name or self.name in other.aliases or other.name in self.aliases


@dataclass(frozen=True)
class LabelScheme:
    """Mapping between a dataset's raw label values and the network's classes."""

    name: str
    classes: tuple[LabelClass, ...]
    regions: Mapping[str, frozenset[int]]
    region_colours: Mapping[str, str] = field(default_factory=dict)
    lesionwise: LesionwiseSettings = LesionwiseSettings()

    def __post_init__(self) -> None:
        if not self.classes or 0 not in self.classes[0].raw_values:
            raise ValueError(f"label scheme {self.name!r}: class 0 must be background and hold raw value 0")
        seen: dict[int, str] = {}
        for cls in self.classes:
            if not cls.raw_values:
                raise ValueError(f"label scheme {self.name!r}: class {cls.name!r} has no raw values")
            for value in cls.raw_values:
                if value in seen:
                    raise ValueError(
                        f"label scheme {self.name!r}: raw value {value} is in both {seen[value]!r} and {cls.name!r}"
                    )
                if not 0 <= value <= 65535:
                    raise ValueError(f"label scheme {self.name!r}: raw value {value} is outside 0..65535")
                seen[value] = cls.name
        for region, values in self.regions.items():
            unknown = set(values) - set(seen)
            if unknown or not values:
                raise ValueError(
                    f"label scheme {self.name!r}: region {region!r} has values {sorted(unknown) or 'none'} "
                    f"that no class holds (classes hold {sorted(seen)})"
                )
        missing = [r for r in self.regions if r not in self.region_colours]
        if missing:
            raise ValueError(f"label scheme {self.name!r}: regions {missing} have no colour")

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def allowed_values(self) -> frozenset[int]:
        """Every raw value a label map of this scheme may hold."""
        return frozenset(v for c in self.classes for v in c.raw_values)

    def to_classes(self, raw: np.ndarray) -> np.ndarray:
        """Map a raw label map to class indices (uint8); raises on values outside the scheme."""
        raw = np.asarray(raw)
        values = np.unique(raw)
        unknown = sorted(set(values.tolist()) - set(self.allowed_values))
        if unknown:
            raise ValueError(
                f"label values {unknown} are not in scheme {self.name!r} (allowed: {sorted(self.allowed_values)})"
            )
        lookup = np.zeros(int(values.max()) + 1, dtype=np.uint8)
        for index, cls in enumerate(self.classes):
            for value in cls.raw_values:
                if value < lookup.size:
                    lookup[value] = index
        return lookup[raw.astype(np.int64)]

    def to_raw(self, classes: np.ndarray) -> np.ndarray:
        """Map class indices back to raw label values (first raw value of each class)."""
        lookup = np.array([c.raw_values[0] for c in self.classes], dtype=np.uint16)
        out = lookup[np.asarray(classes, dtype=np.int64)]
        return out.astype(np.uint8) if out.max(initial=0) < 256 else out

    @property
    def class_colours(self) -> dict[str, str]:
        """Colour of each class, by name (background included)."""
        return {c.name: c.colour for c in self.classes}

    def best_modality(self, region: str, modalities: Sequence[str]) -> str:
        """The modality of ``modalities`` that shows ``region`` best (:data:`REGION_MODALITIES`; the first
        modality when the region's name is not a usual one or none of its modalities is there)."""
        if not modalities:
            raise ValueError("no modality to choose from")
        lower = [m.lower() for m in modalities]
        for wanted in REGION_MODALITIES.get(region, ()):
            if wanted in lower:
                return modalities[lower.index(wanted)]
        return modalities[0]

    def region_legend(self) -> str:
        """The regions defined by their labels, for a table's legend: ``WT (whole tumour): labels 1
        necrotic_non_enhancing, 2 edema, 4 enhancing; ...``."""
        names = {value: c.name for c in self.classes for value in c.raw_values}
        parts = []
        for region, values in self.regions.items():
            title = f"{region} ({REGION_NAMES[region]})" if region in REGION_NAMES else region
            labels = ", ".join(f"{v} {names[v]}" for v in sorted(values))
            parts.append(f"{title}: label{'s' if len(values) > 1 else ''} {labels}")
        return "Regions: " + "; ".join(parts) + "."

    def region_mask(self, raw: np.ndarray, region: str) -> np.ndarray:
        """Boolean mask of a region in a raw label map."""
        return np.isin(raw, sorted(self.regions[region]))

    def region_classes(self, region: str) -> tuple[int, ...]:
        """Indices of the classes a segmentation writes into ``region`` (their first raw value is one of its
        values): the classes whose probabilities add up to the region's."""
        classes = tuple(i for i, cls in enumerate(self.classes) if cls.raw_values[0] in self.regions[region])
        if not classes:
            raise ValueError(f"label scheme {self.name!r}: no class is written with a value of region {region!r} "
                             f"({sorted(self.regions[region])}); its probability is undefined")
        return classes

    def region_probability(self, probabilities: np.ndarray, region: str) -> np.ndarray:
        """A region's probability, the sum of its classes' in ``(class, ...)`` probabilities (float64)."""
        if probabilities.shape[0] != self.n_classes:
            raise ValueError(f"probabilities have {probabilities.shape[0]} classes, label scheme {self.name!r} has "
                             f"{self.n_classes} ({', '.join(self.class_names)})")
        return probabilities[list(self.region_classes(region))].sum(axis=0, dtype=np.float64)

    def describe(self, complete: bool = False) -> dict[str, Any]:
        """Plain-data form, stored with models and reports (read back by :func:`scheme_from_config`).

        Classes, regions and aliases only: the rules that compute something get this, so that a colour changed
        re-runs nothing but figures. ``complete=True`` adds the colours and the lesion-wise settings (for the
        evaluation and figure rules).
        """
        described: dict[str, Any] = {
            "name": self.name,
            "classes": {c.name: list(c.raw_values) for c in self.classes},
            "regions": {r: sorted(v) for r, v in self.regions.items()},
        }
        aliases = {c.name: list(c.aliases) for c in self.classes if c.aliases}
        if aliases:
            described["aliases"] = aliases
        if complete:
            described["colours"] = {**{c.name: c.colour for c in self.classes[1:]}, **dict(self.region_colours)}
            described["lesionwise"] = asdict(self.lesionwise)
        return described


def _colours(name: str, classes: Mapping[str, list[int]], regions: Mapping[str, list[int]],
             colours: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Colour of every class and region: as declared; else a region made of one class's values takes that class's
    colour; else the next colour of :data:`PALETTE` not yet taken."""
    unknown = sorted(set(colours) - set(classes) - set(regions))
    if unknown:
        raise ValueError(f"label scheme {name!r}: colours given for {unknown}, which are neither classes nor regions")
    taken = set(colours.values())
    free = iter([c for c in PALETTE if c not in taken] + list(PALETTE) * len(classes))
    class_colours = {"background": "#000000"}
    for cls in list(classes)[1:]:
        class_colours[cls] = colours.get(cls) or next(free)
    region_colours = {}
    for region, values in regions.items():
        same = [c for c, vals in classes.items() if sorted(vals) == sorted(values) and c in class_colours]
        region_colours[region] = colours.get(region) or (class_colours[same[0]] if same else next(free))
    return class_colours, region_colours


def _scheme(name: str, classes: Mapping[str, list[int]], regions: Mapping[str, list[int]],
            aliases: Mapping[str, list[str]] | None = None, colours: Mapping[str, str] | None = None,
            lesionwise: LesionwiseSettings = LesionwiseSettings()) -> LabelScheme:
    aliases = aliases or {}
    unknown = sorted(set(aliases) - set(classes))
    if unknown:
        raise ValueError(f"label scheme {name!r}: aliases given for classes {unknown} it does not have")
    class_colours, region_colours = _colours(name, classes, regions, colours or {})
    return LabelScheme(
        name=name,
        classes=tuple(LabelClass(n, tuple(int(v) for v in vals), tuple(aliases.get(n, ())),
                                 class_colours.get(n, "#000000"))
                      for n, vals in classes.items()),
        regions={r: frozenset(int(v) for v in vals) for r, vals in regions.items()},
        region_colours=region_colours,
        lesionwise=lesionwise,
    )


# BraTS colours as in the challenge's figures: necrosis red, oedema green, enhancing yellow; whole tumour green,
# core red, enhancing yellow.
_BRATS_COLOURS = {"WT": "#3cb44b", "TC": "#e6194b", "ET": "#ffe119"}


LABEL_SCHEMES: dict[str, LabelScheme] = {
    # BRATS 2013 / 2015 (Havaei's 5 classes).
    "brats2013": _scheme(
        "brats2013",
        {"background": [0], "necrosis": [1], "edema": [2], "non_enhancing": [3], "enhancing": [4]},
        {"WT": [1, 2, 3, 4], "TC": [1, 3, 4], "ET": [4]},
        colours={"necrosis": "#e6194b", "edema": "#3cb44b", "non_enhancing": "#4363d8", "enhancing": "#ffe119",
                 **_BRATS_COLOURS},
        lesionwise=BRATS_LESIONWISE,
    ),
    # BraTS 2017-2021: label 3 was merged into 1.
    "brats2021": _scheme(
        "brats2021",
        {"background": [0], "necrotic_non_enhancing": [1], "edema": [2], "enhancing": [4]},
        {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]},
        {"necrotic_non_enhancing": ["necrosis", "non_enhancing", "netc"], "edema": ["snfh"]},
        colours={"necrotic_non_enhancing": "#e6194b", "edema": "#3cb44b", "enhancing": "#ffe119", **_BRATS_COLOURS},
        lesionwise=BRATS_LESIONWISE,
    ),
    # BraTS 2023+: 1 NETC, 2 SNFH, 3 ET; 4 resection cavity in the 2024 post-treatment data.
    # NETC is 2021's necrotic and non-enhancing core, SNFH its edema (BraTS 2023 label description).
    "brats2023": _scheme(
        "brats2023",
        {"background": [0], "netc": [1], "snfh": [2], "enhancing": [3], "resection_cavity": [4]},
        {"WT": [1, 2, 3], "TC": [1, 3], "ET": [3], "RC": [4]},
        {"netc": ["necrotic_non_enhancing", "necrosis", "non_enhancing"], "snfh": ["edema"]},
        colours={"netc": "#e6194b", "snfh": "#3cb44b", "enhancing": "#ffe119", "resection_cavity": "#911eb4",
                 "RC": "#911eb4", **_BRATS_COLOURS},
        lesionwise=BRATS_LESIONWISE,
    ),
    # ISLES 2015 and any single-lesion dataset.
    "binary": _scheme("binary", {"background": [0], "lesion": [1]}, {"lesion": [1]}, colours={"lesion": "#f58231"}),
}


def scheme_from_config(spec: str | Mapping[str, Any], name: str = "custom") -> LabelScheme:
    """A preset name (``'brats2021'``) or an explicit mapping from the config.

    An explicit mapping looks like::

        labels:
          classes: {background: [0], lesion: [1, 255]}
          regions: {lesion: [1, 255]}      # optional: default one region per non-background class
    """
    if isinstance(spec, str):
        try:
            return LABEL_SCHEMES[spec]
        except KeyError:
            raise ValueError(
                f"unknown label scheme {spec!r}; use one of {', '.join(LABEL_SCHEMES)} or an explicit mapping"
            ) from None
    classes = dict(spec["classes"])
    regions = spec.get("regions") or {n: v for n, v in list(classes.items())[1:]}
    preset = LABEL_SCHEMES.get(name)
    if preset is not None and "colours" not in spec and preset.describe()["classes"] == classes:
        # A preset described without its colours (the computing rules' form, a model file's): the preset's own.
        described = preset.describe(complete=True)
        return _scheme(name, classes, regions, spec.get("aliases"), described["colours"],
                       LesionwiseSettings(**spec.get("lesionwise", described["lesionwise"])))
    lesionwise = LesionwiseSettings(**spec.get("lesionwise", {}))
    return _scheme(name, classes, regions, spec.get("aliases"), spec.get("colours"), lesionwise)


def class_mapping(source: LabelScheme, target: LabelScheme, class_map: Mapping[str, str] | None = None) -> list[int]:
    """For each class of ``source`` (a model's), the index of the same class in ``target`` (a dataset's).

    Classes match by name or alias (the first matching target class is taken: a BraTS 2021 model's
    necrotic/non-enhancing core becomes BRATS 2013's necrosis); ``class_map`` (source name -> target name)
    decides where names differ. Background maps to background. Raises naming every class that cannot be mapped.
    """
    class_map = dict(class_map or {})
    unknown = sorted(set(class_map) - set(source.class_names))
    if unknown:
        raise ValueError(f"class_map names {unknown}, which the model's scheme {source.name!r} does not have "
                         f"(it has {list(source.class_names)})")
    mapping, unmapped = [0], []
    for cls in source.classes[1:]:
        if cls.name in class_map:
            wanted = class_map[cls.name]
            if wanted not in target.class_names:
                raise ValueError(f"class_map: {cls.name} -> {wanted!r}, which is not a class of {target.name!r} "
                                 f"(it has {list(target.class_names)})")
            mapping.append(target.class_names.index(wanted))
            continue
        index = next((i for i, other in enumerate(target.classes) if cls.matches(other)), None)
        if index is None:
            unmapped.append(cls.name)
        mapping.append(index)
    if unmapped:
        raise ValueError(f"classes {unmapped} of the model's scheme {source.name!r} have no class of the same name in "
                         f"{target.name!r} (it has {list(target.class_names)}); map them with "
                         f"class_map: {{{unmapped[0]}: <one of {list(target.class_names[1:])}>}}")
    return mapping
