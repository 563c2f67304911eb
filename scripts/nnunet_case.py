"""A preprocessed subject as an nnU-Net case: one file per channel and the truth as class indices (rule nnunet_case)."""

from pathlib import Path

from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file
from lesionseg.nnunet.layout import export_case

log_to_file(snakemake.log[0])
scheme = snakemake.params.scheme
export_case(Path(snakemake.input.image), Path(snakemake.input.mask), Path(snakemake.input.label),
            scheme_from_config(scheme, name=scheme["name"]), snakemake.wildcards.subject, Path(snakemake.output.case))
