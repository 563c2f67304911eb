"""Summary tables, networks compared, CRF significance and figures of one dataset (rule summarise_dataset)."""

from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file
from lesionseg.reporting.steps import summarise_dataset

log_to_file(snakemake.log[0])
params, output = snakemake.params, snakemake.output
summarise_dataset(
    snakemake.wildcards.dataset, dict(zip(params.methods, snakemake.input.per_subject, strict=True)),
    scheme_from_config(params.scheme, name=params.scheme["name"]), output.csv, output.markdown, output.html,
    output.significance, output.comparison, output.boxplot, output.crf_effect, ensembles=params.ensembles,
)
