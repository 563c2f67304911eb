"""Fault tolerance: a killed workflow leaves nothing that looks done, and a killed training resumes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SNAKEMAKE, cohort_config, run

pytestmark = pytest.mark.integration
PHASE1 = Path("results/cohort/models/tiny/phase1")
LOG = Path("logs/cohort/train_model/tiny/phase1.log")


def read_log(workdir: Path) -> str:
    return (workdir / LOG).read_text() if (workdir / LOG).exists() else ""


def wait_for(condition, timeout_s: float, what: str, process: subprocess.Popen, output: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"snakemake ended (code {process.returncode}) before {what}: "
                                 f"{output.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"no {what} within {timeout_s} s")
        time.sleep(0.05)


def test_a_killed_training_leaves_no_model_and_resumes_from_its_checkpoint(finished_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, symlinks=True)
    # More epochs: a training of other settings, which starts afresh (the old checkpoint is not resumed).
    config = cohort_config(epochs=30)
    (workdir / "config.yaml").write_text(config)
    snakemake_output = tmp_path / "snakemake.log"
    with snakemake_output.open("w") as stderr:
        process = subprocess.Popen(
            [*SNAKEMAKE, str(PHASE1 / "model.pt"), "--directory", str(workdir),
             "--configfile", str(workdir / "config.yaml")],
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )
        # Snakemake starts each job with a fresh log.
        wait_for(lambda: "loop: epoch 3:" in read_log(workdir), 300, "third epoch", process, snakemake_output)
        os.killpg(process.pid, signal.SIGKILL)  # snakemake and the training job, as a node failure would
        process.wait()
    killed_log = read_log(workdir)
    assert "ignoring a checkpoint of other settings" in killed_log and "loop: epoch 30:" not in killed_log
    # An epoch is logged, then checkpointed: the kill may fall between the two.
    last_logged = max(int(n) for n in re.findall(r"loop: epoch (\d+):", killed_log))

    # Nothing of the killed job looks complete: its outputs are gone (Snakemake removed the old ones
    # before starting it, and the new ones are written under temporary names, then renamed).
    for output in ("model.pt", "history.csv", "learning_curve.png"):
        assert not (workdir / PHASE1 / output).exists(), output
    assert (workdir / PHASE1 / "checkpoint.pt").is_file()

    # After a kill Snakemake's lock stays: the user unlocks as its message says. The next run then
    # re-runs the incomplete job, which resumes from the checkpoint and completes the 30 epochs.
    assert run(workdir, config, "--unlock").returncode == 0
    result = run(workdir, config, str(PHASE1 / "model.pt"))
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = read_log(workdir)
    done = int(resumed.split("resuming tiny phase 1 after epoch ")[1].split()[0])
    assert done in (last_logged - 1, last_logged) and done >= 2, (done, last_logged)
    assert "loop: epoch 1:" not in resumed and f"loop: epoch {done + 1}:" in resumed and "loop: epoch 30:" in resumed
    history = (workdir / PHASE1 / "history.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in history[1:]] == list(range(1, 31))
