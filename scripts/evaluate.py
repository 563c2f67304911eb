"""Score one method's segmentations of the test subjects (rule evaluate)."""

from lesionseg.evaluation.steps import evaluate_method
from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
params = snakemake.params
truths = iter(snakemake.input.truths)
truth_paths = [next(truths) if labelled else None for labelled in params.labelled]
evaluate_method(params.subjects, snakemake.input.segmentations, truth_paths,
                scheme_from_config(params.scheme, name=params.scheme["name"]), snakemake.output.per_subject)
