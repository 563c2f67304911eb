"""The 3D fully connected CRF on one subject's network probabilities (rule crf)."""

from lesionseg.runtime import use_huge_pages

use_huge_pages()  # before torch allocates anything

from lesionseg.crf import CRFParameters
from lesionseg.inference.steps import crf_subject, read_crf_parameters
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
inputs = snakemake.input
parameters = (read_crf_parameters(inputs.parameters) if "parameters" in inputs.keys()
              else CRFParameters.from_mapping(snakemake.params.parameters))
crf_subject(inputs.probabilities, inputs.image, inputs.mask, snakemake.output.probabilities, parameters,
            threads=snakemake.threads)
