"""The 3D fully connected CRF on one subject's network probabilities (rule crf)."""

from lesionseg.logs import log_to_file
from lesionseg.devices import prepare_torch_process

log_to_file(snakemake.log[0])
prepare_torch_process(snakemake.config["gpus"]["jobs_per_gpu"])  # before torch allocates memory or starts CUDA

from lesionseg.crf import CRFParameters
from lesionseg.inference.steps import crf_subject, read_crf_parameters

inputs = snakemake.input
parameters = (read_crf_parameters(inputs.parameters) if "parameters" in inputs.keys()
              else CRFParameters.from_mapping(snakemake.params.parameters))
crf_subject(inputs.probabilities, inputs.image, inputs.mask, snakemake.output.probabilities, parameters,
            threads=snakemake.threads, channels=snakemake.params.link["channels"])
