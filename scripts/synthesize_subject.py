"""Generate one subject of the built-in synthetic cohort (rules synthesize_<kind>_subject)."""

from pathlib import Path

from lesionseg.datasets.cohort import write_synthetic_subject
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
spec = snakemake.params.synthetic
write_synthetic_subject(
    spec["kind"], spec["seed"], spec["index"], spec["spacing_mm"], Path(snakemake.params.root), Path(snakemake.output.qc)
)
