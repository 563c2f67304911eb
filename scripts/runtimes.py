"""Wall time and memory per rule of one dataset, and the run's wall time, from its benchmark files (rule runtimes)."""

from lesionseg.logs import log_to_file
from lesionseg.reporting.runtimes import summarise_runtimes

log_to_file(snakemake.log[0])
output = snakemake.output
summarise_runtimes(list(snakemake.input), output.csv, output.png,
                   f"{snakemake.wildcards.dataset}: wall time per rule (benchmark files)", run_path=output.run,
                   unmeasured=snakemake.params.unmeasured)
