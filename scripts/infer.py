"""Dense inference of one model on one preprocessed subject (rule infer)."""

from lesionseg.logs import log_to_file
from lesionseg.devices import prepare_torch_process

log_to_file(snakemake.log[0])
prepare_torch_process()  # before torch allocates memory or initialises CUDA

from lesionseg.inference.steps import infer_subject

infer_subject(snakemake.input.model, snakemake.input.image, snakemake.input.mask, snakemake.output.probabilities,
              fingerprint=snakemake.params.fingerprint, settings=snakemake.params.settings, threads=snakemake.threads)
