"""Train one model for one phase on one dataset (rule train_model)."""

from lesionseg.logs import log_to_file
from lesionseg.devices import prepare_torch_process

log_to_file(snakemake.log[0])
prepare_torch_process(snakemake.config["gpus"]["jobs_per_gpu"])  # before torch allocates memory or starts CUDA

from lesionseg.labels import scheme_from_config
from lesionseg.training.loop import SubjectFiles, TrainingJob, train

inputs, params = snakemake.input, snakemake.params
spec = params.spec
train_subjects = [
    SubjectFiles(*files)
    for files in zip(params.train_subjects, inputs.train_images, inputs.train_masks, inputs.train_labels,
                     inputs.train_samples, strict=True)
]
val_subjects = [
    SubjectFiles(*files)
    for files in zip(params.val_subjects, inputs.val_images, inputs.val_masks, inputs.val_labels, strict=True)
]
job = TrainingJob(
    model_name=spec["name"],
    architecture=spec["architecture"],
    parameters=spec["parameters"],
    settings=spec["training"],
    phase=int(snakemake.wildcards.phase),
    scheme=scheme_from_config(params.scheme, name=params.scheme["name"]),
    modalities=params.modalities,
    fingerprint=params.fingerprint,
    train=train_subjects,
    val=val_subjects,
    previous_phase_model=inputs.get("previous"),
    first_model=inputs.get("first"),
    dataset=snakemake.wildcards.dataset,
    preprocessing=dict(params.preprocessing),
)
train(job, snakemake.output.model, snakemake.output.history, snakemake.output.curve, params.checkpoint,
      threads=snakemake.threads, validation_budget_mb=snakemake.config["inference"]["memory_budget_mb"])
