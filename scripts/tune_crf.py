"""Random search of the CRF parameters on the validation subjects (rule tune_crf)."""

from lesionseg.runtime import use_huge_pages

use_huge_pages()  # before torch allocates anything

from lesionseg.crf import CRFParameters
from lesionseg.inference.steps import tune_crf_parameters
from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
inputs, params = snakemake.input, snakemake.params
tune_crf_parameters(
    params.subjects, inputs.probabilities, inputs.images, inputs.masks, inputs.labels,
    scheme_from_config(params.scheme, name=params.scheme["name"]), CRFParameters.from_mapping(params.base),
    params.trials, params.seed, snakemake.output.parameters, snakemake.output.search, threads=snakemake.threads,
)
