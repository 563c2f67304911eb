"""The networks' hyper-parameters, declared as data: architecture name -> the hyper-parameters its builder takes
and the papers' defaults (anchors.md sections 1-2).

Torch-free, so that checking a config's models (:func:`lesionseg.training.settings.resolve_models`, which every
parse of the Snakefile runs: once per job on a cluster) imports no network code. :mod:`lesionseg.models` pairs
each name with its builder and takes the defaults from here; tests/test_models.py checks that the names declared
here are the builders' keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HyperParameters:
    """What a model's ``parameters:`` may set for one architecture (its builder's keyword arguments besides
    ``in_channels``, ``n_classes`` and a cascade's ``first``), and the defaults."""

    names: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


# DeepMedic(...) (lesionseg.models.deepmedic); the cascaded DeepMedic builds two of the same hyper-parameters.
_DEEPMEDIC = ("maps", "subsample_factors", "low_res_maps", "fc_maps", "dropout", "residual_layers")
# TwoPathCNN(...) and the cascades' CascadeCNN(...) (lesionseg.models.havaei): the cascades' second CNN makes
# room for the first's probabilities itself, so only TwoPathCNN takes the extra channels.
_CASCADE_CNN = ("maxout", "local_maps", "global_maps", "local_kernels", "global_kernel", "local_pools",
                "output_kernel", "dropout")
_TWOPATH_CNN = (*_CASCADE_CNN, "extra_local_channels", "extra_output_channels")

HYPERPARAMETERS: dict[str, HyperParameters] = {
    "deepmedic": HyperParameters(
        _DEEPMEDIC,
        {"maps": [30, 30, 40, 40, 40, 40, 50, 50], "subsample_factors": [3], "fc_maps": [150, 150],
         "dropout": 0.5, "residual_layers": []},
        "Kamnitsas et al. 2017: normal + factor-3 pathway, FC 150, as in the paper",
    ),
    "deepmedic-residual": HyperParameters(
        _DEEPMEDIC,
        {"maps": [30, 30, 40, 40, 40, 40, 50, 50], "subsample_factors": [3, 5], "fc_maps": [250, 250],
         "dropout": 0.5, "residual_layers": [4, 6, 8]},
        "the later DeepMedic: residual connections at layers 4, 6, 8, factor-3 and factor-5 pathways, FC 250",
    ),
    "cascaded-deepmedic": HyperParameters(
        _DEEPMEDIC,
        {"maps": [30, 30, 40, 40, 40, 40, 50, 50], "subsample_factors": [3], "fc_maps": [150, 150],
         "dropout": 0.5, "residual_layers": []},
        "beyond both papers: a DeepMedic fed the class probabilities of a first, frozen DeepMedic",
    ),
    "twopathcnn": HyperParameters(_TWOPATH_CNN, {"maxout": 2, "dropout": 0.2}, "Havaei et al. 2017 TwoPathCNN"),
    "inputcascadecnn": HyperParameters(_CASCADE_CNN, {"maxout": 2, "dropout": 0.2}, "Havaei InputCascadeCNN"),
    "localcascadecnn": HyperParameters(_CASCADE_CNN, {"maxout": 2, "dropout": 0.2}, "Havaei LocalCascadeCNN"),
    "mfcascadecnn": HyperParameters(_CASCADE_CNN, {"maxout": 2, "dropout": 0.2}, "Havaei MFCascadeCNN"),
}

CASCADES = ("cascaded-deepmedic", "inputcascadecnn", "localcascadecnn", "mfcascadecnn")
"""The architectures built on a first, frozen network."""


def architecture_parameters(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The hyper-parameters of architecture ``name``: its defaults updated by ``overrides``, checked."""
    if name not in HYPERPARAMETERS:
        raise ValueError(f"unknown architecture {name!r}; use one of {', '.join(HYPERPARAMETERS)}")
    declared = HYPERPARAMETERS[name]
    unknown = sorted(set(overrides or {}) - set(declared.names))
    if unknown:
        raise ValueError(f"architecture {name!r} has no hyper-parameter(s) {unknown}")
    return {**declared.defaults, **(overrides or {})}
