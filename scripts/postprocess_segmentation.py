"""One subject's segmentation of a method with the post-processing chosen for it (rule postprocess_segmentation)."""

from lesionseg.inference.segmentation_steps import postprocess_subject
from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
scheme = snakemake.params.scheme
postprocess_subject(
    snakemake.input.segmentation, snakemake.input.choice, scheme_from_config(scheme, name=scheme["name"]),
    snakemake.output.segmentation,
)
