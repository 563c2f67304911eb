"""The run's overview and configuration pages (rule overview)."""

from lesionseg.logs import log_to_file
from lesionseg.reporting.overview import crf_uses_of, datasets_of, write_overview

log_to_file(snakemake.log[0])
params, inputs, output = snakemake.params, snakemake.input, snakemake.output
write_overview(datasets_of(params.datasets, inputs.manifests), crf_uses_of(params.crf), list(inputs.run_times),
               params.config, output.overview, output.configuration)
