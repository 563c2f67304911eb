"""A dataset's nnU-Net cases linked into nnU-Net's raw layout with its dataset.json (rule nnunet_raw)."""

from pathlib import Path

from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file
from lesionseg.nnunet.layout import raw_dataset

log_to_file(snakemake.log[0])
params = snakemake.params
raw_dataset({s: Path(c) for s, c in zip(params.subjects, snakemake.input.cases, strict=True)},
            scheme_from_config(params.scheme, name=params.scheme["name"]), params.modalities,
            Path(snakemake.output.raw))
