"""Planning a BraTS-sized cohort: DAG time, memory, and the jobs a local run and a SLURM run would execute.

A cohort of N subjects is linked from four synthetic 4 mm heads (symbolic links under N names, with masks and
labels, a generic dataset in a temporary folder), cross-validated with --folds folds and one DeepMedic. The
manifest is built first (its time is printed too); then, for each N:

- `snakemake -n` (a dry run: the whole DAG of the cohort): wall time, peak memory (the process's maximum RSS),
  and the number of jobs a local run executes;
- the same DAG under `--profile profiles/slurm`: its build time, and the cluster jobs (sbatch submissions) a run
  would make, each group job once, besides the jobs Snakemake runs itself on the login node (COUNT_UNITS).

    .venv/bin/python bench/cohort_scale.py --subjects 250 1251 --folds 5

Doubling the subjects should at most double the DAG time: the printed ratio is time(N) / time(first N) against
N / first N. Only measures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = 4  # distinct synthetic heads the cohort's subjects link to
CONFIG = """datasets:
  big:
    format: generic
    root: {root}
    images: "{{subject}}/{{subject}}_{{modality}}.nii.gz"
    label: "{{subject}}/{{subject}}_seg.nii.gz"
    mask: "{{subject}}/{{subject}}_brainmask.nii.gz"
    modalities: [flair, t1, t1ce, t2]
    labels: brats2013
    split: {{folds: {folds}, test: 0.1, seed: 0}}
    models: [dm]
    preprocessing:
      resample: {{spacing_mm: 4.0}}
models:
  dm:
    architecture: deepmedic
    training: {{epochs: 2, batches_per_epoch: 2}}
"""
# Snakemake with its scheduler replaced by a count of the DAG's submission units: each group job once, every other
# job once, split into those a cluster profile submits and those Snakemake runs itself on the login node (local
# rules). A dry run cannot be parsed for this: it prints only jobs, not how a cluster profile bundles them.
COUNT_UNITS = """
import json, sys
import snakemake.scheduling.job_scheduler as job_scheduler
from snakemake.cli import main

def count_units(self):
    workflow, dag = self.workflow, self.workflow.dag
    def on_login_node(job):
        return job.rule.group is None and (job.rule.name in workflow._localrules or job.rule.norun)
    units = {dag._group.get(job, job) for job in dag.needrun_jobs()}
    local = sum(any(on_login_node(j) for j in u.jobs) if u.is_group() else on_login_node(u) for u in units)
    print("UNITS", json.dumps({"cluster": len(units) - local, "groups": sum(u.is_group() for u in units),
                               "login_node": local}), flush=True)
    return True

job_scheduler.JobScheduler.schedule = count_units
sys.exit(main(sys.argv[1:]))
"""
TOTAL = re.compile(r"^total\s+(\d+)$", re.MULTILINE)


def write_sources(folder: Path) -> list[Path]:
    """Four synthetic subjects in the generic layout (folders of <subject>_<modality>.nii.gz)."""
    from lesionseg.datasets.cohort import write_synthetic_subject

    sources = []
    for index in range(SOURCES):
        files = write_synthetic_subject("tumor", 0, index, 4.0, folder)
        sources.append(files.label.parent)
    return sources


def link_cohort(root: Path, sources: list[Path], n_subjects: int) -> None:
    """``n_subjects`` subject folders, each linking one source's files under the subject's name."""
    root.mkdir(parents=True)
    for index in range(n_subjects):
        subject = f"sub-{index:05d}"
        source = sources[index % len(sources)]
        (root / subject).mkdir()
        for path in source.iterdir():
            suffix = path.name[len(source.name) + 1:].replace("brain_mask", "brainmask")
            (root / subject / f"{subject}_{suffix}").symlink_to(path)


def snakemake(workdir: Path, *args: str, count_units: bool = False) -> tuple[str, float, float]:
    """Snakemake in ``workdir`` (its scheduler replaced by COUNT_UNITS if asked): its output, wall seconds and peak
    resident memory (MB)."""
    prefix = ["-c", COUNT_UNITS] if count_units else ["-m", "snakemake"]
    command = [sys.executable, *prefix, "-s", str(REPO / "Snakefile"), *args, "--directory", str(workdir),
               "--configfile", str(workdir / "config.yaml")]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{output[-3000:]}")
    return output, seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, nargs="+", default=[250, 1251])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build the cohorts in this folder and keep them")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="lesionseg-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    sources = write_sources(base / "sources")
    print(f"{'subjects':>8} {'manifest s':>10} {'DAG s':>6} {'peak MB':>7} {'jobs':>6} {'DAG s (SLURM)':>13} "
          f"{'cluster jobs':>12} {'of them groups':>14} {'login node':>10}  DAG time ratio / cohort ratio")
    first = None
    for n_subjects in args.subjects:
        workdir = base / f"cohort{n_subjects}"
        link_cohort(workdir / "data", sources, n_subjects)
        (workdir / "config.yaml").write_text(CONFIG.format(root=workdir / "data", folds=args.folds))
        _, manifest_s, _ = snakemake(workdir, "results/big/subjects.tsv", "--cores", "2", "--quiet", "all")
        local, dag_s, peak_mb = snakemake(workdir, "--cores", "2", "--dry-run", "--quiet", "rules")
        jobs = int(TOTAL.search(local).group(1))
        slurm, slurm_s, _ = snakemake(workdir, "--profile", str(REPO / "profiles/slurm"), "--dry-run", "--quiet",
                                      "all", count_units=True)
        units = json.loads(slurm.split("UNITS ", 1)[1].splitlines()[0])
        first = first or (n_subjects, dag_s)
        print(f"{n_subjects:>8} {manifest_s:>10.1f} {dag_s:>6.1f} {peak_mb:>7.0f} {jobs:>6} {slurm_s:>13.1f} "
              f"{units['cluster']:>12} {units['groups']:>14} {units['login_node']:>10}  "
              f"{dag_s / first[1]:.2f} / {n_subjects / first[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
