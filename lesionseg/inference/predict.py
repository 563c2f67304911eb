"""One subject segmented by a model file, outside Snakemake (``lesionseg predict``).

The same steps as the workflow, in the same order and with the same code:
co-registration (when asked), the brain mask (given, or the data's own
background), N4, resampling and cropping, normalisation with the model's
preprocessing settings; dense inference; the CRF with the model's parameters
(when asked); and the export to the input's grid. So a subject gives the
same segmentation here as in the workflow.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lesionseg.config import ConfigError
from lesionseg.datasets.formats import SubjectFiles
from lesionseg.datasets.validation import validate_subject
from lesionseg.labels import scheme_from_config
from lesionseg.preprocessing.settings import fingerprint

if TYPE_CHECKING:
    from lesionseg.evaluation.quality import SubjectQuality

log = logging.getLogger(__name__)

PREDICT = "predict"
"""The dataset name of ``predict``'s subject in messages and records."""


def schema_defaults(section: str) -> dict[str, Any]:
    """The config's defaults of one top-level section (``inference``, ``crf``), as the workflow fills them."""
    from lesionseg.config import validate_config

    return validate_config({"datasets": {"x": {"format": "synthetic", "synthetic": {}}}})[section]


@dataclass(frozen=True)
class Prediction:
    """What ``predict`` wrote."""

    segmentation: Path
    probabilities: Path
    entropy: Path
    mutual_information: Path
    method: str
    quality: SubjectQuality  # predicted Dice, score and flags under the model file's quality model


def _step_settings(preprocessing: Mapping[str, Any], modalities: tuple[str, ...], mask: bool,
                   skull_strip: str | None, coregister: bool) -> dict[str, Any]:
    """The model's preprocessing with this subject's own ways to a brain mask and a common grid."""
    settings = copy.deepcopy(dict(preprocessing))
    settings["skull_strip"]["method"] = "given" if mask else (skull_strip or "none")
    settings["coregister"]["enabled"] = coregister
    if settings["reference"] not in modalities:
        settings["reference"] = modalities[0]
    return settings


def predict_subject(model_path: str | Path, images: Mapping[str, str | Path], out: str | Path,
                    mask: str | Path | None = None, crf: bool = False, threads: int = 2,
                    skull_strip: str | None = None, coregister: bool = False,
                    inference: Mapping[str, Any] | None = None, keep_intermediate: bool = False) -> Prediction:
    """Segment one subject with a model file; write ``segmentation.nii.gz``, ``probabilities.nii.gz`` (of the
    network, or of the network + CRF with ``crf``) and the uncertainty maps ``entropy.nii.gz`` and
    ``mutual_information.nii.gz`` on the grid of the model's reference modality, and its quality score
    (``quality.json``) under the quality model the file holds (an unfitted one if it holds none)."""
    from lesionseg.crf import CRFParameters
    from lesionseg.evaluation.quality_steps import assess_prediction
    from lesionseg.inference.segmentation_steps import export_subject
    from lesionseg.inference.steps import crf_subject, infer_subject
    from lesionseg.preprocessing.ants_bridge import set_threads
    from lesionseg.preprocessing.steps import (bias_correct_subject, coregister_subject, normalise_subject,
                                               resample_crop_subject, skull_strip_subject)
    from lesionseg.training.checkpoints import ModelFileError, read_model_file

    set_threads(threads)
    try:
        contents = read_model_file(model_path)
    except ModelFileError as err:
        raise ConfigError(str(err)) from None
    modalities = tuple(contents["modalities"])
    missing = [m for m in modalities if m not in images]
    extra = [m for m in images if m not in modalities]
    if missing or extra:
        raise ConfigError(f"{model_path}: the model takes {list(modalities)}; "
                          + (f"missing --image {', '.join(f'{m}=FILE' for m in missing)}" if missing else "")
                          + ("; " if missing and extra else "")
                          + (f"it does not take {extra}" if extra else ""))
    if contents.get("preprocessing") is None:
        raise ConfigError(f"{model_path}: the model file does not hold its preprocessing settings")
    settings = _step_settings(contents["preprocessing"], modalities, mask is not None, skull_strip, coregister)
    scheme = scheme_from_config(contents["scheme"], name=contents["scheme"]["name"])
    out = Path(out)
    subject = out.resolve().name  # messages and logs name the subject after its output folder
    # The checks the workflow's manifest makes: readable, 3D, finite, on one grid, a plausible mask.
    files = SubjectFiles(subject, {m: Path(images[m]) for m in modalities}, mask=Path(mask) if mask else None)
    problems = validate_subject(PREDICT, files, None, settings["reference"], coregister,
                                tuple(settings["skull_strip"]["brain_volume_ml"]))
    if problems:
        raise ConfigError("the inputs cannot be segmented:\n" + "\n".join(f"  {p}" for p in problems))
    out.mkdir(parents=True, exist_ok=True)
    raw = [str(images[m]) for m in modalities]
    with tempfile.TemporaryDirectory(prefix="lesionseg-predict-", dir=out) as scratch:
        work = out / "intermediate" if keep_intermediate else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        on_grid = raw
        records = []
        if coregister:
            coregister_subject(PREDICT, subject, raw, modalities, settings["reference"], settings["coregister"],
                               settings["seed"], str(work / "coregistered.nii.gz"), str(work / "coregister.json"))
            on_grid = [str(work / "coregistered.nii.gz")]
            records.append(str(work / "coregister.json"))
        brain_mask = work / "brain_mask_original.nii.gz"
        skull_strip_subject(PREDICT, subject, on_grid, modalities, settings["reference"], settings["skull_strip"],
                            settings["seed"], (None, None), str(brain_mask), str(work / "skull_strip.json"),
                            given_mask_path=str(mask) if mask else None)
        bias_correct_subject(PREDICT, subject, on_grid, modalities, str(brain_mask), settings["bias_correction"],
                             str(work / "bias_corrected.nii.gz"), str(work / "bias_correction.json"))
        resample_crop_subject(PREDICT, subject, str(work / "bias_corrected.nii.gz"), str(brain_mask),
                              settings["resample"], str(work / "resampled.nii.gz"), str(work / "brain_mask.nii.gz"),
                              str(work / "geometry.json"), str(work / "resample.json"))
        records += [str(work / f"{name}.json") for name in ("skull_strip", "bias_correction", "resample")]
        data_fingerprint = fingerprint(settings, modalities)
        normalise_subject(PREDICT, subject, str(work / "resampled.nii.gz"), str(work / "brain_mask.nii.gz"),
                          modalities, settings["normalisation"], data_fingerprint, records, raw,
                          str(work / "image.nii.gz"), str(work / "provenance.json"))
        network_output, network_mutual_information = work / "network.nii.gz", work / "mutual_information.nii.gz"
        infer_subject([model_path], work / "image.nii.gz", work / "brain_mask.nii.gz", network_output,
                      network_mutual_information, data_fingerprint, dict(inference or schema_defaults("inference")),
                      threads=threads)
        final, method = network_output, contents["name"]
        if crf:
            parameters = contents.get("crf_parameters") or schema_defaults("crf")["parameters"]
            if contents.get("crf_parameters") is None:
                log.warning("%s holds no CRF parameters: using the defaults", model_path)
            final, method = work / "crf.nii.gz", f"{method}+crf"
            crf_subject(network_output, work / "image.nii.gz", work / "brain_mask.nii.gz", final,
                        CRFParameters.from_mapping(parameters), threads=threads)
        written = {name: out / f"{name}.nii.gz"
                   for name in ("segmentation", "probabilities", "entropy", "mutual_information")}
        inference_settings = inference or schema_defaults("inference")
        export_subject(final, network_mutual_information, work / "geometry.json", scheme, written["probabilities"],
                       written["segmentation"], written["entropy"], written["mutual_information"],
                       min_component_mm3=inference_settings["min_component_mm3"],
                       probabilities_dtype=inference_settings["probabilities_dtype"])
        quality = assess_prediction(subject, final, network_mutual_information, work / "image.nii.gz",
                                    work / "brain_mask.nii.gz", modalities, scheme,
                                    contents.get("quality_models", {}).get("crf" if crf else "network"),
                                    out / "quality.json", network_output if crf else None)
    log.info("%s: wrote %s", method, ", ".join(str(path) for path in written.values()))
    return Prediction(method=method, quality=quality, **written)
