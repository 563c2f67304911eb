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
from collections import Counter
from collections.abc import Collection
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
# Jobs that must be cluster jobs, by kind (submitted_jobs): the networks', the exports, each subject's preprocessing.
CLUSTER_JOBS = {"rule_manifest", "rule_train_model", "rule_tune_crf", "rule_infer", "rule_crf", "rule_export_results",
                "group_preprocess"}
# Seconds of work: the workflow runs them on the login node, not as cluster jobs.
LIGHT_RULES = {"evaluate", "calibrate", "overlay", "postprocess_segmentation", "choose_postprocessing",
               "summarise_dataset", "summarise_calibration"}
# Per group of the profile, the rule with one job per group job (a subject's preprocessing).
GROUP_RULES = {"preprocess": "normalise"}
# Only a guard against a hung run: minutes on a quiet machine, many times that on a loaded one.
RUN_TIMEOUT_S = 3 * 3600
# Snakemake's line for each cluster job; the log's folder is rule_<name> or group_<id>_<its rules>.
SUBMISSION = re.compile(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/([^/]+)/")
LOCAL_JOB = re.compile(r"^\s*local(?:rule|checkpoint) (\w+):$", re.MULTILINE)
FINISHED_JOB = re.compile(r"^\s*Finished jobid: \d+ \(Rule: (\w+)\)$", re.MULTILINE)


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
    for rule in [*NETWORK_RULES, "nnunet_train"]:  # nnU-Net's too, as a user would (this cohort has none)
        profile["set-resources"][rule].update(slurm_partition=PARTITION, gpu=0)
        profile["set-threads"][rule] = 2
    profile.update({"slurm-status-command": "squeue", "jobs": 8,
                    "slurm-init-seconds-before-status-checks": 3, "seconds-between-status-checks": 2})
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def snakemake_on_slurm(workdir: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake as a user runs it on the login node: the profile, no --cores."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--profile", str(profile), *args,
         "--directory", str(workdir), "--configfile", str(workdir / "config.yaml")],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )


def submitted_jobs(output: str, group_ids: Collection[str]) -> dict[str, str]:
    """SLURM job id -> what the job ran, rule_<name> or group_<id>, from Snakemake's submission lines."""
    return {job_id: job_kind(folder, group_ids) for job_id, folder in SUBMISSION.findall(output)}


def job_kind(log_folder: str, group_ids: Collection[str]) -> str:
    """rule_<name>, or group_<id> for a group job's folder (group_<id>_<its rules>)."""
    for group_id in group_ids:
        if log_folder.startswith(f"group_{group_id}_"):
            return f"group_{group_id}"
    return log_folder


def local_jobs(output: str) -> Counter[str]:
    """Jobs per rule that Snakemake ran itself rather than on the cluster (its 'localrule <name>:' lines)."""
    return Counter(LOCAL_JOB.findall(output))


def rule_jobs_finished(output: str) -> Counter[str]:
    """Jobs per rule that a Snakemake run finished, from its output or log ('Finished jobid: N (Rule: <name>)').

    Counted as they finish, since the job table printed first ends at the manifest checkpoint.
    """
    return Counter(FINISHED_JOB.findall(output))


def first_run_log(workdir: Path) -> str:
    """The log of the first Snakemake run in ``workdir`` (logs are named by their start time)."""
    return sorted((workdir / ".snakemake/log").glob("*.snakemake.log"))[0].read_text()


def expected_submissions(executed: Counter[str], ran_locally: Counter[str], groups: dict[str, str]) -> Counter[str]:
    """The cluster jobs, by kind, for ``executed`` jobs: one per job of a rule neither grouped nor run locally,
    and one per group job (a subject's preprocessing runs each of its rules once)."""
    expected = Counter({f"rule_{rule}": count for rule, count in executed.items()
                        if rule not in groups and rule not in ran_locally})
    expected.update({f"group_{group}": executed[rule] for group, rule in GROUP_RULES.items()})
    return expected


def test_the_workflow_runs_on_slurm_and_gives_the_local_results(slurm_cluster, finished_run, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(cohort_config(finished_run / "data"))
    profile = site_profile(tmp_path / "site")
    finished_before = slurm_cluster.finished_jobs()
    result = snakemake_on_slurm(workdir, profile)
    assert result.returncode == 0, result.stderr[-5000:]

    # The SLURM run ran the local run's jobs: the light rules' on the login node, every other rule's as
    # SLURM jobs, each once (a failed and retried job would show as one more), the heavy ones among them.
    settings = yaml.safe_load((profile / "config.yaml").read_text())
    submitted = submitted_jobs(result.stderr, set(settings["groups"].values()))
    ran_locally = local_jobs(result.stderr)
    executed = rule_jobs_finished(first_run_log(finished_run))
    assert rule_jobs_finished(result.stderr) == executed, rule_jobs_finished(result.stderr)
    assert ran_locally == {rule: executed[rule] for rule in ran_locally}, ran_locally
    expected = expected_submissions(executed, ran_locally, settings["groups"])
    print(f"{sum(executed.values())} jobs, {len(submitted)} cluster jobs, {sum(ran_locally.values())} on the login node")
    assert Counter(submitted.values()) == expected, Counter(submitted.values())
    assert CLUSTER_JOBS <= set(submitted.values()), submitted
    assert LIGHT_RULES <= ran_locally.keys(), ran_locally

    # SLURM ran exactly those jobs, each to completion on the partition: its job completion log keeps every
    # finished job, however long the run took (the controller forgets them after MinJobAge).
    finished_after = slurm_cluster.finished_jobs_once_recorded(submitted.keys())
    finished = {job_id: record for job_id, record in finished_after.items() if job_id not in finished_before}
    assert finished.keys() == submitted.keys(), (sorted(finished), sorted(submitted))
    outcomes = {(record["JobState"], record["ExitCode"], record["Partition"], record["WorkDir"])
                for record in finished.values()}
    assert outcomes == {("COMPLETED", "0:0", PARTITION, str(workdir))}, outcomes
    assert len({record["Name"] for record in finished.values()}) == 1, finished  # one run's jobs: named by its id

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
