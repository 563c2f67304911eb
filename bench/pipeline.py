"""Wall time per stage and rule of a finished run, from its benchmark files.

Run from the working directory of a run (e.g. after `make demo`):
    python bench/pipeline.py [--benchmarks benchmarks]
Only rules with a `benchmark:` directive (the heavy ones) are counted; jobs
that ran in parallel are summed, so the totals are machine time, not elapsed time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lesionseg.reporting.runtimes import read_benchmarks, runtime_table

STAGES = {
    "coregister": "preprocessing", "skull_strip": "preprocessing", "bias_correct": "preprocessing",
    "resample_crop": "preprocessing", "train_model": "training", "nnunet_plan": "training", "infer": "inference",
    "tune_crf": "CRF", "crf": "CRF",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", type=Path, default=Path("benchmarks"), help="folder of benchmark files")
    args = parser.parse_args()
    files = sorted(args.benchmarks.glob("*/*/**/*.tsv"))
    if not files:
        raise SystemExit(f"no benchmark files under {args.benchmarks}/: run the workflow first")
    for dataset in sorted({f.relative_to(args.benchmarks).parts[0] for f in files}):
        table = runtime_table(read_benchmarks([f for f in files if f.relative_to(args.benchmarks).parts[0] == dataset]))
        table.insert(0, "stage", table["rule"].map(STAGES).fillna("other"))
        print(f"dataset {dataset}: wall time per rule (s, summed over jobs)")
        print(table.to_string(index=False))
        print("per stage (min):", (table.groupby("stage", sort=False)["total_s"].sum() / 60).round(2).to_dict())
        print()


if __name__ == "__main__":
    main()
