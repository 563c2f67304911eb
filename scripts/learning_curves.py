"""Learning curves of every training phase of one model on one dataset (rule learning_curves)."""

from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file
from lesionseg.training.curves import plot_learning_curves, read_history

log_to_file(snakemake.log[0])
params = snakemake.params
scheme = scheme_from_config(params.scheme, name=params.scheme["name"])
phases = {int(phase): read_history(path) for phase, path in zip(params.phases, snakemake.input.histories, strict=True)}
plot_learning_curves(snakemake.output.png, phases, {**scheme.class_colours, **scheme.region_colours},
                     f"{snakemake.wildcards.dataset}: {snakemake.wildcards.model}, learning curves")
