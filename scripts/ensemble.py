"""Average the member models' probability maps of one subject (rule ensemble)."""

from lesionseg.inference.segmentation_steps import ensemble_subject
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
ensemble_subject(list(snakemake.input.members), snakemake.output.probabilities)
