"""nnU-Net's integrity check, fingerprint, plans and preprocessing of a dataset for one model (rule nnunet_plan)."""

from pathlib import Path

from lesionseg.logs import log_to_file
from lesionseg.nnunet.planning import plan_and_preprocess

if __name__ == "__main__":  # nnU-Net's worker processes are spawned: they import this file again
    log_to_file(snakemake.log[0], stdout=True)  # nnU-Net prints its progress
    parameters = snakemake.params.parameters
    plan_and_preprocess(Path(snakemake.input.raw), Path(snakemake.output.preprocessed), parameters["planner"],
                        parameters["plan"], parameters["configuration"], snakemake.params.splits,
                        processes=snakemake.threads)
