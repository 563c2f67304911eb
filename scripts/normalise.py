"""Normalise intensities inside the brain mask and write the provenance (rule normalise)."""

from lesionseg.logs import log_to_file
from lesionseg.preprocessing.steps import normalise_subject

log_to_file(snakemake.log[0])
normalise_subject(
    dataset=snakemake.wildcards.dataset,
    subject=snakemake.wildcards.subject,
    stack_path=snakemake.input.stack,
    mask_path=snakemake.input.mask,
    modalities=snakemake.params.modalities,
    settings=snakemake.params.settings,
    fingerprint=snakemake.params.fingerprint,
    records=list(snakemake.input.records),
    raw_paths=list(snakemake.input.raw),
    image_path=snakemake.output.image,
    provenance_path=snakemake.output.provenance,
)
