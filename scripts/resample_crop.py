"""Resample to isotropic spacing and crop to the brain (rule resample_crop)."""

from lesionseg.logs import log_to_file
from lesionseg.preprocessing.steps import resample_crop_subject

log_to_file(snakemake.log[0])
resample_crop_subject(
    dataset=snakemake.wildcards.dataset,
    subject=snakemake.wildcards.subject,
    stack_path=snakemake.input.stack,
    mask_path=snakemake.input.mask,
    settings=snakemake.params.settings,
    out_stack_path=snakemake.output.stack,
    out_mask_path=snakemake.output.mask,
    geometry_path=snakemake.output.geometry,
    record_path=snakemake.output.record,
)
