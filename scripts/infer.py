"""Dense inference of one model on one preprocessed subject (rule infer)."""

from lesionseg.runtime import use_huge_pages

use_huge_pages()  # before torch allocates anything

from lesionseg.inference.steps import infer_subject
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
infer_subject(snakemake.input.model, snakemake.input.image, snakemake.input.mask, snakemake.output.probabilities,
              fingerprint=snakemake.params.fingerprint, settings=snakemake.params.settings, threads=snakemake.threads)
