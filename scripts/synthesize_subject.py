"""Generate one subject of the built-in synthetic cohort (rule synthesize_subject)."""

from pathlib import Path

from lesionseg.datasets.cohort import write_synthetic_subject
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
spec = snakemake.params.synthetic
root = Path(snakemake.output.subject).parent
write_synthetic_subject(spec["kind"], spec["seed"], spec["index"], spec["spacing_mm"], root, Path(snakemake.output.qc))
