"""Average the member models' probability maps of one subject, and their disagreement (rule ensemble)."""

from lesionseg.inference.segmentation_steps import ensemble_subject
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
ensemble_subject(list(snakemake.input.members), list(snakemake.input.member_mutual_information),
                 snakemake.output.probabilities, snakemake.output.mutual_information)
