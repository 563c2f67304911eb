"""Random search of the CRF parameters on the validation subjects (rule tune_crf)."""

from lesionseg.logs import log_to_file
from lesionseg.devices import prepare_torch_process

log_to_file(snakemake.log[0])
prepare_torch_process(snakemake.config["gpus"]["jobs_per_gpu"])  # before torch allocates memory or starts CUDA

from lesionseg.crf import CRFParameters
from lesionseg.inference.steps import tune_crf_parameters
from lesionseg.labels import scheme_from_config

inputs, params = snakemake.input, snakemake.params
tune_crf_parameters(
    params.subjects, inputs.probabilities, inputs.images, inputs.masks, inputs.labels,
    scheme_from_config(params.scheme, name=params.scheme["name"]), CRFParameters.from_mapping(params.base),
    params.trials, params.seed, snakemake.output.parameters, snakemake.output.search, threads=snakemake.threads,
    image_channels=params.link["channels"], weights_per_sigma_draw=params.weights_per_sigma_draw,
)
