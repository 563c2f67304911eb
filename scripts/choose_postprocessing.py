"""Post-processing of one method chosen on the labelled validation subjects (rule choose_postprocessing)."""

from lesionseg.inference.segmentation_steps import choose_postprocessing_on_validation
from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
params = snakemake.params
choose_postprocessing_on_validation(
    params.subjects, snakemake.input.probabilities, snakemake.input.labels,
    scheme_from_config(params.scheme, name=params.scheme["name"]), params.min_component_mm3, params.candidates_mm3,
    snakemake.output.choice,
)
