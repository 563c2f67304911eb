"""Reliability table and calibration summary of one method's probabilities on its labelled subjects (rule
calibrate)."""

from lesionseg.evaluation.calibration import calibrate_method
from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
params, inputs, output = snakemake.params, snakemake.input, snakemake.output
calibrate_method(params.subjects, inputs.probabilities, inputs.truths, inputs.masks,
                 scheme_from_config(params.scheme, name=params.scheme["name"]), output.bins, output.summary)
