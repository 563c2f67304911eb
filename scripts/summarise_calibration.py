"""A dataset's calibration table and reliability diagram (rule summarise_calibration)."""

from lesionseg.logs import log_to_file
from lesionseg.reporting.calibration import summarise_calibration

log_to_file(snakemake.log[0])
params, inputs, output = snakemake.params, snakemake.input, snakemake.output
summarise_calibration(snakemake.wildcards.dataset, dict(zip(params.methods, inputs.bins, strict=True)),
                      dict(zip(params.methods, inputs.summaries, strict=True)), params.regions, output.csv,
                      output.png)
