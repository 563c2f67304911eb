"""QC picture and intensity statistics of a preprocessed subject (rule preprocessing_qc)."""

from lesionseg.evaluation.quality_steps import write_image_statistics
from lesionseg.logs import log_to_file
from lesionseg.preprocessing.steps import preprocessing_qc_subject

log_to_file(snakemake.log[0])
preprocessing_qc_subject(
    dataset=snakemake.wildcards.dataset,
    subject=snakemake.wildcards.subject,
    raw_paths=list(snakemake.input.raw),
    raw_mask_path=snakemake.input.raw_mask,
    image_path=snakemake.input.image,
    mask_path=snakemake.input.mask,
    geometry_path=snakemake.input.geometry,
    modalities=snakemake.params.modalities,
    png_path=snakemake.output.png,
)
write_image_statistics(snakemake.input.image, snakemake.input.mask, snakemake.params.modalities,
                       snakemake.output.statistics)
