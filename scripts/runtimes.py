"""Wall time and memory per rule of one dataset, from its benchmark files (rule runtimes)."""

from lesionseg.logs import log_to_file
from lesionseg.reporting.runtimes import summarise_runtimes

log_to_file(snakemake.log[0])
summarise_runtimes(list(snakemake.input), snakemake.output.csv, snakemake.output.png,
                   f"{snakemake.wildcards.dataset}: wall time per rule (benchmark files)")
