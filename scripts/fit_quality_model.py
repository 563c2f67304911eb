"""A method's quality model, fitted on its validation subjects (rule fit_quality_model)."""

from lesionseg.evaluation.quality_steps import fit_quality_model_on_validation
from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
inputs, params = snakemake.input, snakemake.params
fit_quality_model_on_validation(
    params.subjects, list(inputs.probabilities), list(inputs.mutual_information), list(inputs.labels),
    list(inputs.training_labels), list(inputs.training_statistics),
    scheme_from_config(params.scheme, name=params.scheme["name"]), snakemake.output.model,
)
