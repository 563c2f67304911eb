"""Probabilities, segmentation and uncertainty maps of one method and subject on the subject's original grid
(rule export_results)."""

from lesionseg.inference.segmentation_steps import export_subject
from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
params = snakemake.params
export_subject(
    snakemake.input.probabilities, snakemake.input.mutual_information, snakemake.input.geometry,
    scheme_from_config(params.scheme, name=params.scheme["name"]), snakemake.output.probabilities,
    snakemake.output.segmentation, snakemake.output.entropy, snakemake.output.mutual_information,
    min_component_mm3=params.min_component_mm3, probabilities_dtype=params.probabilities_dtype,
)
