"""The per-subject page of one dataset: every metric per subject, method and region, with the overlays of every
subject of a small cohort, or of a bounded set of a large one, as thumbnails (rule subject_table)."""

from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file
from lesionseg.reporting.gallery import Embedding
from lesionseg.reporting.steps import write_subject_table

log_to_file(snakemake.log[0])
params, inputs = snakemake.params, snakemake.input
write_subject_table(
    snakemake.wildcards.dataset, dict(zip(params.methods, inputs.per_subject, strict=True)), inputs.manifest,
    params.overlays, scheme_from_config(params.scheme, name=params.scheme["name"]), snakemake.output.html,
    Embedding.from_config(params.report),
)
