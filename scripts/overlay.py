"""Overlay of one method's segmentation and the truth on a test subject's images (rule overlay)."""

from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file
from lesionseg.reporting.steps import overlay_subject

log_to_file(snakemake.log[0])
inputs, params, wildcards = snakemake.input, snakemake.params, snakemake.wildcards
overlay_subject(wildcards.subject, wildcards.method, list(inputs.images), params.modalities, inputs.get("truth"),
                inputs.segmentation, scheme_from_config(params.scheme, name=params.scheme["name"]),
                snakemake.output.png)
