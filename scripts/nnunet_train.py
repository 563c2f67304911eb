"""One nnU-Net model (or one fold's) trained by nnU-Net's trainer, written as a model file (rule nnunet_train)."""

from lesionseg.logs import log_to_file
from lesionseg.devices import prepare_torch_process

if __name__ == "__main__":  # nnU-Net's data augmentation workers are spawned: they import this file again
    log_to_file(snakemake.log[0], stdout=True)  # nnU-Net prints its progress
    prepare_torch_process(snakemake.config["gpus"]["jobs_per_gpu"])  # before torch allocates memory or starts CUDA

    from pathlib import Path

    from lesionseg.labels import scheme_from_config
    from lesionseg.nnunet.training import train_model_file

    params, output = snakemake.params, snakemake.output
    train_model_file(
        Path(snakemake.input.preprocessed), Path(params.results), params.fold, model_name=params.model,
        dataset=snakemake.wildcards.dataset, parameters=params.parameters, budget=params.training,
        scheme=scheme_from_config(params.scheme, name=params.scheme["name"]), modalities=params.modalities,
        fingerprint=params.fingerprint, preprocessing=dict(params.preprocessing),
        train_subjects=params.train_subjects, val_subjects=params.val_subjects, threads=snakemake.threads,
        model_path=Path(output.model), history_path=Path(output.history), curve_path=Path(output.curve),
    )
