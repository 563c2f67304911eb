# lesionseg: brain lesion segmentation in multi-modal MRI, from raw scans to report.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/datasets.smk"
include: "rules/preprocessing.smk"
include: "rules/training.smk"


rule all:
    input:
        all_targets,
    default_target: True
    localrule: True
