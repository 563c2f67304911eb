"""The workflow on a real SLURM cluster (one node, this machine) through profiles/slurm, against a local run.

The cluster is set up by the test itself (tests/slurm_cluster.py) when it runs as
root with apt-get; otherwise the test is skipped with the reason, except under CI
(CI=true), where it must run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import COHORT_SPLIT, REPO, cohort_config
from lesionseg.io import read_image
from slurm_cluster import PARTITION, SingleNodeSlurm, install_packages

pytestmark = [pytest.mark.integration, pytest.mark.slurm]
NETWORK_RULES = ["train_model", "infer", "tune_crf", "crf"]


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the SLURM test, but: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    reason = install_packages()
    if reason:
        unavailable(reason)
    cluster = SingleNodeSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except (RuntimeError, subprocess.SubprocessError) as error:
        cluster.stop()
        unavailable(f"could not start a single-node SLURM cluster: {error}")
    yield cluster
    cluster.stop()


def site_profile(folder: Path) -> Path:
    """profiles/slurm adapted to this cluster as the README tells a user to adapt it.

    The partition, CPU-only network jobs, squeue for status (no accounting
    database) and, so that results equal the local run's on 2 cores, 2 threads
    for the network jobs. Everything else is the shipped profile.
    """
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"]["slurm_partition"] = PARTITION
    for rule in NETWORK_RULES:
        profile["set-resources"][rule].update(slurm_partition=PARTITION, gpu=0)
        profile["set-threads"][rule] = 2
    profile.update({"slurm-status-command": "squeue", "jobs": 8, "latency-wait": 10,
                    "slurm-init-seconds-before-status-checks": 3, "seconds-between-status-checks": 2})
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def snakemake_on_slurm(workdir: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake as a user runs it on the login node: the profile, no --cores."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--profile", str(profile), *args,
         "--directory", str(workdir), "--configfile", str(workdir / "config.yaml")],
        capture_output=True, text=True, timeout=1500,
    )


def test_the_workflow_runs_on_slurm_and_gives_the_local_results(slurm_cluster, finished_run, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(cohort_config(finished_run / "data"))
    profile = site_profile(tmp_path / "site")
    known_jobs = set(slurm_cluster.job_ids())
    result = snakemake_on_slurm(workdir, profile)
    assert result.returncode == 0, result.stderr[-5000:]

    # The heavy jobs went through SLURM (each with a job id the controller knows), the light ones did not.
    submissions = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/([^/]+)/", result.stderr)
    assert submissions, result.stderr[-3000:]
    assert {job_id for job_id, _ in submissions} <= set(slurm_cluster.job_ids()) - known_jobs
    folders = {folder for _, folder in submissions}
    rules = {folder.removeprefix("rule_") for folder in folders if folder.startswith("rule_")}
    assert {"manifest", "train_model", "infer", "tune_crf", "crf", "export_results"} <= rules, folders
    assert any(folder.startswith("group_preprocess") for folder in folders), folders  # one job per subject
    assert not rules & {"preprocess_label", "sample_subject", "evaluate", "overlay", "summarise_dataset"}, rules

    # ... and gave what the local run gave.
    tested = [s for s, split in COHORT_SPLIT.items() if split == "test"]
    for method in ("tiny", "tiny+crf"):
        for subject in tested:
            path = f"results/cohort/segmentations/{method}/{subject}.nii.gz"
            assert np.array_equal(read_image(workdir / path, dtype=None).data,
                                  read_image(finished_run / path, dtype=None).data), path
        scores = f"results/cohort/evaluation/{method}/per_subject.csv"
        pd.testing.assert_frame_equal(pd.read_csv(workdir / scores), pd.read_csv(finished_run / scores))
    tuned = "results/cohort/crf/tiny/parameters.yaml"
    assert (workdir / tuned).read_text() == (finished_run / tuned).read_text()
    # A second run finds nothing to do.
    again = snakemake_on_slurm(workdir, profile, "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
