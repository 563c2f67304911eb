"""Overlay of a method family's segmentations and the truth on a test subject's images (rule overlay)."""

from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file
from lesionseg.reporting.overlays import overlay_subject

log_to_file(snakemake.log[0])
inputs, params, wildcards = snakemake.input, snakemake.params, snakemake.wildcards
# The segmentations come in the order of params.methods: the network, then its variants, side by side.
overlay_subject(wildcards.subject, list(params.methods), list(inputs.images), params.modalities, inputs.get("truth"),
                list(inputs.segmentations), scheme_from_config(params.scheme, name=params.scheme["name"]),
                snakemake.output.png, inputs.probabilities)
