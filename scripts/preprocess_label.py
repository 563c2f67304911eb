"""Bring a subject's truth onto the preprocessing grid (rule preprocess_label)."""

from lesionseg.logs import log_to_file
from lesionseg.preprocessing.steps import preprocess_label

log_to_file(snakemake.log[0])
preprocess_label(snakemake.input.label, snakemake.input.geometry, snakemake.output.label)
