# lesionseg: brain lesion segmentation in multi-modal MRI, from raw scans to report.

from snakemake.utils import min_version, validate

from lesionseg.config import sorted_keys
from lesionseg.devices import gpu_job_slots

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "schemas/config.schema.yaml")
canonical_config = sorted_keys(config)  # reordering the config's keys re-runs nothing
config.clear()
config.update(canonical_config)


# On a workstation, at most as many network jobs run at once as the GPUs have slots, so that none waits for one
# (lesionseg.devices.pin_gpu); `--resources gpu=K` overrides it, and a cluster allocates GPUs per job.
if workflow.global_resources.get("gpu").value is None and workflow.global_resources["_nodes"].value is None:
    gpu_slots = gpu_job_slots(config["gpus"]["jobs_per_gpu"])
    if gpu_slots:
        workflow.register_resource("gpu", gpu_slots)


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/datasets.smk"
include: "rules/preprocessing.smk"
include: "rules/training.smk"
include: "rules/nnunet.smk"
include: "rules/inference.smk"
include: "rules/crf.smk"
include: "rules/postprocessing.smk"
include: "rules/evaluation.smk"
include: "rules/quality.smk"
include: "rules/reporting.smk"


rule all:
    input:
        all_targets,
    default_target: True
    localrule: True


onsuccess:
    print(
        "lesionseg finished. Per dataset, see results/<dataset>/: subjects.tsv (manifest), "
        "qc/ (pictures), preprocessed/ (images, masks, provenance), models/ (trained networks, "
        "learning curves), segmentations/<method>/ and probabilities/<method>/ (per test subject, on "
        "its original grid; <method> is a model or an ensemble (name@dataset if trained on another dataset, "
        "name@folds for a cross-validation's fold models together), or either + crf, each + pp with the "
        "post-processing chosen in postprocessing/ on the validation split); logs/ holds one log per job."
    )
