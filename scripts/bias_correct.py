"""N4 bias-field correction inside the brain mask (rule bias_correct)."""

from lesionseg.logs import log_to_file
from lesionseg.preprocessing.ants_bridge import set_threads

log_to_file(snakemake.log[0])
set_threads(snakemake.threads)

from lesionseg.preprocessing.steps import bias_correct_subject  # noqa: E402

bias_correct_subject(
    dataset=snakemake.wildcards.dataset,
    subject=snakemake.wildcards.subject,
    image_paths=list(snakemake.input.images),
    modalities=snakemake.params.modalities,
    mask_path=snakemake.input.mask,
    settings=snakemake.params.settings,
    stack_path=snakemake.output.stack,
    record_path=snakemake.output.record,
)
