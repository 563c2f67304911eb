"""Every segmented subject's predicted Dice, score and flags under one method (rule quality_control)."""

from lesionseg.evaluation.quality_steps import assess_method
from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
inputs, params = snakemake.input, snakemake.params
assess_method(params.subjects, list(inputs.probabilities), list(inputs.mutual_information), list(inputs.statistics),
              inputs.model, scheme_from_config(params.scheme, name=params.scheme["name"]), snakemake.output.table,
              network_probability_paths=list(inputs.get("network_probabilities", [])))
