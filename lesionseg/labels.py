"""Label schemes: raw label values -> network classes, and evaluation regions.

A scheme is data, declared once here (or in the config as an explicit mapping)
and used by validation, sampling, training, inference and evaluation alike:

- ``classes`` (ordered): the network's output classes; class 0 is background and
  holds raw value 0. Each class lists the raw values it stands for, and a
  segmentation is written back with the first raw value of each class.
- ``regions``: the evaluation regions, each a set of raw values (BraTS whole
  tumour / tumour core / enhancing tumour; or a single lesion region).

Values of the BraTS releases are those of anchors.md section 4.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LabelClass:
    """One network class, the raw label values it stands for, and the names the same tissue has in other
    schemes (a model trained on one scheme is applied to data of another by class name)."""

    name: str
    raw_values: tuple[int, ...]
    aliases: tuple[str, ...] = ()

    def matches(self, other: LabelClass) -> bool:
        """Whether ``other`` (of another scheme) is the same tissue: same name, or one's alias is the other."""
        return self.name == other.name or self.name in other.aliases or other.name in self.aliases


@dataclass(frozen=True)
class LabelScheme:
    """Mapping between a dataset's raw label values and the network's classes."""

    name: str
    classes: tuple[LabelClass, ...]
    regions: Mapping[str, frozenset[int]]

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

    def region_mask(self, raw: np.ndarray, region: str) -> np.ndarray:
        """Boolean mask of a region in a raw label map."""
        return np.isin(raw, sorted(self.regions[region]))

    def describe(self) -> dict[str, Any]:
        """Plain-data form, stored with models and reports (read back by :func:`scheme_from_config`)."""
        described: dict[str, Any] = {
            "name": self.name,
            "classes": {c.name: list(c.raw_values) for c in self.classes},
            "regions": {r: sorted(v) for r, v in self.regions.items()},
        }
        aliases = {c.name: list(c.aliases) for c in self.classes if c.aliases}
        if aliases:
            described["aliases"] = aliases
        return described


def _scheme(name: str, classes: Mapping[str, list[int]], regions: Mapping[str, list[int]],
            aliases: Mapping[str, list[str]] | None = None) -> LabelScheme:
    aliases = aliases or {}
    unknown = sorted(set(aliases) - set(classes))
    if unknown:
        raise ValueError(f"label scheme {name!r}: aliases given for classes {unknown} it does not have")
    return LabelScheme(
        name=name,
        classes=tuple(LabelClass(n, tuple(int(v) for v in vals), tuple(aliases.get(n, ())))
                      for n, vals in classes.items()),
        regions={r: frozenset(int(v) for v in vals) for r, vals in regions.items()},
    )


LABEL_SCHEMES: dict[str, LabelScheme] = {
    # BRATS 2013 / 2015 (Havaei's 5 classes).
    "brats2013": _scheme(
        "brats2013",
        {"background": [0], "necrosis": [1], "edema": [2], "non_enhancing": [3], "enhancing": [4]},
        {"WT": [1, 2, 3, 4], "TC": [1, 3, 4], "ET": [4]},
    ),
    # BraTS 2017-2021: label 3 was merged into 1.
    "brats2021": _scheme(
        "brats2021",
        {"background": [0], "necrotic_non_enhancing": [1], "edema": [2], "enhancing": [4]},
        {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]},
        {"necrotic_non_enhancing": ["necrosis", "non_enhancing", "netc"], "edema": ["snfh"]},
    ),
    # BraTS 2023+: 1 NETC, 2 SNFH, 3 ET; 4 resection cavity in the 2024 post-treatment data.
    # NETC is 2021's necrotic and non-enhancing core, SNFH its edema (BraTS 2023 label description).
    "brats2023": _scheme(
        "brats2023",
        {"background": [0], "netc": [1], "snfh": [2], "enhancing": [3], "resection_cavity": [4]},
        {"WT": [1, 2, 3], "TC": [1, 3], "ET": [3], "RC": [4]},
        {"netc": ["necrotic_non_enhancing", "necrosis", "non_enhancing"], "snfh": ["edema"]},
    ),
    # ISLES 2015 and any single-lesion dataset.
    "binary": _scheme("binary", {"background": [0], "lesion": [1]}, {"lesion": [1]}),
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
    return _scheme(name, classes, regions, spec.get("aliases"))


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
