"""The post-processing chosen for every method of one dataset, as CSV and HTML (rule summarise_postprocessing)."""

from lesionseg.logs import log_to_file
from lesionseg.reporting.steps import summarise_postprocessing

log_to_file(snakemake.log[0])
summarise_postprocessing(
    snakemake.wildcards.dataset, dict(zip(snakemake.params.methods, snakemake.input.choices, strict=True)),
    snakemake.output.csv, snakemake.output.html,
)
