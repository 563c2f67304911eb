"""A method's quality model, fitted on its validation subjects (rule fit_quality_model)."""

from lesionseg.evaluation.quality_steps import fit_quality_model_on_validation
from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
inputs, params = snakemake.input, snakemake.params


def files(name):  # a network not trained on this dataset has no inputs here: an unfitted model
    return list(inputs.get(name, []))


fit_quality_model_on_validation(
    params.subjects, files("probabilities"), files("mutual_information"), files("labels"), files("training_labels"),
    files("training_statistics"), scheme_from_config(params.scheme, name=params.scheme["name"]),
    snakemake.output.model, network_probability_paths=files("network_probabilities"),
)
