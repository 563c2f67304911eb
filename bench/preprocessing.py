"""Seconds per subject per preprocessing step on the demo cohort.

Generates a few subjects of the demo cohort (or uses --spacing/--n to change
that), then times each step's function side by side in this one process, with
the demo's settings and ITK using --threads threads, and prints a table: mean,
min and max seconds per subject for each step, and the total.

    .venv/bin/python bench/preprocessing.py --n 4 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lesionseg.preprocessing.ants_bridge import set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4, help="subjects to time")
    parser.add_argument("--spacing", type=float, default=2.0, help="voxel size of the cohort (mm)")
    parser.add_argument("--threads", type=int, default=2, help="ITK threads")
    args = parser.parse_args()
    set_threads(args.threads)

    from lesionseg.config import validate_config
    from lesionseg.datasets import dataset_from_config
    from lesionseg.datasets.cohort import write_synthetic_subject
    from lesionseg.preprocessing import steps
    from lesionseg.preprocessing.settings import fingerprint
    from lesionseg.synthetic import head_template
    from lesionseg.io import write_nifti

    entry = validate_config({"datasets": {"demo": {
        "format": "synthetic", "synthetic": {"kind": "tumor", "n_subjects": args.n, "seed": 0,
                                             "spacing_mm": args.spacing}}}})["datasets"]["demo"]
    timings: dict[str, list[float]] = {}

    def timed(name, function, *a, **k):
        started = time.perf_counter()
        result = function(*a, **k)
        timings.setdefault(name, []).append(time.perf_counter() - started)
        return result

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dataset = dataset_from_config("demo", entry, results_dir=work)
        settings, modalities = dataset.preprocessing, dataset.modalities
        template = head_template(settings["reference"], max(1.0, settings["resample"]["spacing_mm"]))
        write_nifti(work / "head.nii.gz", template.image, template.affine)
        write_nifti(work / "head_mask.nii.gz", template.brain_mask, template.affine)
        for index in range(args.n):
            files = timed("synthesise (not preprocessing)", write_synthetic_subject, "tumor", 0, index, args.spacing,
                          work / "raw")
            out = work / files.subject
            images = [str(files.images[m]) for m in modalities]
            timed("skull_strip", steps.skull_strip_subject, "demo", files.subject, images, modalities,
                  settings["reference"], settings["skull_strip"], settings["seed"],
                  (str(work / "head.nii.gz"), str(work / "head_mask.nii.gz")), str(out / "mask.nii.gz"),
                  str(out / "skull_strip.json"))
            timed("bias_correct", steps.bias_correct_subject, "demo", files.subject, images, modalities,
                  str(out / "mask.nii.gz"), settings["bias_correction"], str(out / "n4.nii.gz"), str(out / "n4.json"))
            timed("resample_crop", steps.resample_crop_subject, "demo", files.subject, str(out / "n4.nii.gz"),
                  str(out / "mask.nii.gz"), settings["resample"], str(out / "resampled.nii.gz"),
                  str(out / "brain_mask.nii.gz"), str(out / "geometry.json"), str(out / "resample.json"))
            timed("normalise", steps.normalise_subject, "demo", files.subject, str(out / "resampled.nii.gz"),
                  str(out / "brain_mask.nii.gz"), modalities, settings["normalisation"],
                  fingerprint(settings, modalities), [str(out / "skull_strip.json"), str(out / "n4.json"),
                                                      str(out / "resample.json")], images,
                  str(out / "image.nii.gz"), str(out / "provenance.json"))
            timed("preprocessing_qc", steps.preprocessing_qc_subject, "demo", files.subject, images,
                  str(out / "mask.nii.gz"), str(out / "image.nii.gz"), str(out / "brain_mask.nii.gz"),
                  str(out / "geometry.json"), modalities, str(out / "qc.png"))

    print(f"\nPreprocessing of {args.n} demo subjects at {args.spacing:g} mm, ITK threads {args.threads}")
    print(f"{'step':<32}{'mean s':>8}{'min s':>8}{'max s':>8}")
    total = 0.0
    for name, values in timings.items():
        print(f"{name:<32}{statistics.mean(values):>8.2f}{min(values):>8.2f}{max(values):>8.2f}")
        if not name.startswith("synthesise"):
            total += statistics.mean(values)
    print(f"{'preprocessing per subject':<32}{total:>8.2f}")


if __name__ == "__main__":
    main()
