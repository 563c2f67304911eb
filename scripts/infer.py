"""Dense inference of one network (its model files' mean) on one preprocessed subject (rule infer)."""

from lesionseg.logs import log_to_file
from lesionseg.devices import prepare_torch_process

log_to_file(snakemake.log[0], stdout=True)  # nnU-Net's predictor prints
prepare_torch_process(snakemake.config["gpus"]["jobs_per_gpu"])  # before torch allocates memory or starts CUDA

from lesionseg.inference.steps import infer_subject

link = snakemake.params.link
infer_subject(list(snakemake.input.models), snakemake.input.image, snakemake.input.mask,
              snakemake.output.probabilities, snakemake.output.mutual_information, fingerprint=link["fingerprint"],
              settings=snakemake.params.settings, threads=snakemake.threads, channels=link["channels"],
              classes=link["classes"], n_classes=link["n_classes"])
