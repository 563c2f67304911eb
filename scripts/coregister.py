"""Rigidly register every modality to the reference modality (rule coregister)."""

from lesionseg.logs import log_to_file
from lesionseg.preprocessing.ants_bridge import set_threads

log_to_file(snakemake.log[0])
set_threads(snakemake.threads)

from lesionseg.preprocessing.steps import coregister_subject  # noqa: E402

coregister_subject(
    dataset=snakemake.wildcards.dataset,
    subject=snakemake.wildcards.subject,
    image_paths=list(snakemake.input.images),
    modalities=snakemake.params.modalities,
    reference=snakemake.params.reference,
    settings=snakemake.params.settings,
    seed=snakemake.params.seed,
    stack_path=snakemake.output.stack,
    record_path=snakemake.output.record,
)
