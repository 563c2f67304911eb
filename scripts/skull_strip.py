"""Brain mask of a subject on its original grid (rule skull_strip)."""

from lesionseg.logs import log_to_file
from lesionseg.preprocessing.ants_bridge import set_threads

log_to_file(snakemake.log[0])
set_threads(snakemake.threads)

from lesionseg.preprocessing.steps import skull_strip_subject  # noqa: E402

skull_strip_subject(
    dataset=snakemake.wildcards.dataset,
    subject=snakemake.wildcards.subject,
    image_paths=list(snakemake.input.images),
    modalities=snakemake.params.modalities,
    reference=snakemake.params.reference,
    settings=snakemake.params.settings,
    seed=snakemake.params.seed,
    template_paths=(snakemake.input.get("template"), snakemake.input.get("template_mask")),
    given_mask_path=snakemake.input.get("given_mask"),
    mask_path=snakemake.output.mask,
    record_path=snakemake.output.record,
)
