"""Size of the report's per-subject parts for a large cohort, without running the pipeline.

For each N, a cohort of N subjects (dataset ``big``, BraTS regions WT/TC/ET) with two network families: a
DeepMedic one (deepmedic, deepmedic+crf, deepmedic+pp, deepmedic+crf+pp) and an nnU-Net one (nnunet,
nnunet+pp). Each method's per-subject table is random but plausible (seeded; about 5% of the subjects are hard
cases with a low Dice). Overlays and preprocessing QC pictures are hard links to a few real ones, drawn by the
pipeline's own functions (overlay_figure, save_preprocessing_qc) from three of the six real BraTS 2015 cases in
``../shared/data/deepmedic-brats2015`` (predictions: the truth shifted and eroded), or from synthetic heads
(``--source synthetic``, the demo's look). Each subject's preprocessing grid is a real one with its box scaled
a little (a few subjects by a lot: failed skull-strips). Then the functions the rules call write:

- the per-subject page (rule subject_table: ``write_subject_table``),
- the preprocessing QC page (rule overview: ``write_qc_page``),

and it prints their sizes, pictures embedded and write time; and what Snakemake's report.html holds that
grows with the cohort (every report() item, base64-encoded: 4/3 of its size): now the two pages; before this
layout, every overlay and QC picture as an item of its own (their sum is printed), on top of a per-subject page
that embedded every overlay. Nothing is asserted.

    .venv/bin/python bench/report_size.py --subjects 12 300 1251 [--source real|synthetic] [--keep DIR]

``--keep DIR`` leaves each cohort's pages in DIR/<N>/ (to open in a browser).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared/data/deepmedic-brats2015"
REAL_CASES = ("test/brats_2013_pat0001_1", "test/brats_2013_pat0002_1", "validation/brats_2013_pat0003_1")
FAMILIES = {"deepmedic": ["deepmedic", "deepmedic+crf", "deepmedic+pp", "deepmedic+crf+pp"],
            "nnunet": ["nnunet", "nnunet+pp"]}
DATASET = "big"
BASE64 = 4 / 3


@dataclass
class Case:
    """One source subject on its canonical grid: images ``(C, X, Y, Z)``, truth (raw labels), brain mask."""

    name: str
    modalities: list[str]
    images: np.ndarray
    truth: np.ndarray
    brain: np.ndarray
    affine: np.ndarray


def real_case(folder: Path) -> Case:
    from lesionseg.io import read_channels, read_image
    from lesionseg.preprocessing.geometry import canonical_grid, to_preprocessing_grid

    channels = read_channels([str(folder / "Flair_subtrMeanDivStd.nii.gz"), str(folder / "T1c_subtrMeanDivStd.nii.gz")])
    grid = canonical_grid(channels.data.shape, channels.affine)

    def canonical(path: str) -> np.ndarray:
        return to_preprocessing_grid(read_image(path, dtype=None).data, grid, order=0)

    return Case(folder.name, ["flair", "t1ce"], np.moveaxis(to_preprocessing_grid(channels.data, grid, order=0), -1, 0),
                canonical(str(folder / "OTMultiClass.nii.gz")).astype(np.uint8),
                canonical(str(folder / "brainmask.nii.gz")) > 0.5, grid.affine)


def synthetic_case(index: int) -> Case:
    from lesionseg.synthetic import MODALITIES, synthesize_subject

    subject = synthesize_subject("tumor", seed=0, index=index, spacing_mm=2.0)
    modalities = list(MODALITIES["tumor"])
    return Case(f"synthetic{index}", modalities, np.stack([subject.images[m] for m in modalities]),
                subject.label, subject.brain_mask > 0, subject.affine)


def predictions(truth: np.ndarray, methods: list[str]) -> list[tuple[str, np.ndarray]]:
    """Plausible segmentations: the truth shifted a little more, and eroded, for each next method."""
    out = []
    for k, method in enumerate(methods):
        shifted = np.roll(truth, k + 1, axis=0)
        out.append((method, np.where(ndimage.binary_erosion(shifted > 0, iterations=k), shifted, 0).astype(np.uint8)))
    return out


def source_pictures(cases: list[Case], folder: Path) -> tuple[dict[str, list[Path]], list[Path], list[dict]]:
    """Per family, one overlay per case; one QC picture and the preprocessing grid (JSON payload) per case."""
    from lesionseg.labels import LABEL_SCHEMES
    from lesionseg.preprocessing.geometry import preprocessing_grid, to_preprocessing_grid
    from lesionseg.preprocessing.qc import save_preprocessing_qc
    from lesionseg.reporting.overlays import overlay_figure

    overlays: dict[str, list[Path]] = {network: [] for network in FAMILIES}
    qc, grids = [], []
    for case in cases:
        for network, methods in FAMILIES.items():
            path = folder / f"{case.name}_{network}.png"
            overlay_figure(case.name, case.images, case.modalities, case.truth, predictions(case.truth, methods),
                           LABEL_SCHEMES["brats2013"], case.affine, path)
            overlays[network].append(path)
        spacing = float(np.linalg.norm(case.affine[:3, 0]))
        grid = preprocessing_grid(case.brain, case.affine, spacing, 10.0)
        raw = np.moveaxis(case.images, 0, -1)
        path = folder / f"{case.name}_qc.png"
        save_preprocessing_qc(path, case.modalities, raw, case.brain, to_preprocessing_grid(raw, grid, order=1),
                              to_preprocessing_grid(case.brain, grid, order=0) > 0, grid, title=f"big / {case.name}")
        qc.append(path)
        grid.to_json(folder / f"{case.name}_geometry.json")
        grids.append(json.loads((folder / f"{case.name}_geometry.json").read_text()))
    return overlays, qc, grids


def subject_names(n: int) -> list[str]:
    return [f"BraTS2021_{i:05d}" for i in range(n)]


def per_subject_tables(subjects: list[str], rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """Per method, one row per subject and region with the metrics of the evaluation stage."""
    hard = rng.random(len(subjects)) < 0.05
    base = {region: rng.beta(9, 2, len(subjects)) for region in ("WT", "TC", "ET")}
    tables = {}
    for k, method in enumerate(m for methods in FAMILIES.values() for m in methods):
        rows = []
        for region, dice in base.items():
            noise = rng.normal(0, 0.03, len(subjects)) - 0.6 * hard * rng.random(len(subjects))
            noisy = np.clip(dice - 0.01 * k + noise, 0, 1)
            for subject, d in zip(subjects, noisy, strict=True):
                truth_ml = rng.uniform(5, 120) * 1000
                rows.append({"subject": subject, "region": region, "dice": d, "sensitivity": min(1, d + 0.03),
                             "specificity": 0.99995, "precision": max(0, d - 0.02), "hd95": 2 + 30 * (1 - d),
                             "assd": 0.5 + 5 * (1 - d), "volume_truth_mm3": truth_ml,
                             "volume_prediction_mm3": truth_ml * rng.uniform(0.8, 1.2), "lesionwise_dice": d * 0.95,
                             "lesionwise_hd95": 5 + 40 * (1 - d), "truth_lesions": 2.0, "detected_lesions": 2.0,
                             "false_positive_lesions": float(rng.integers(0, 3)), "lesion_f1": 0.8})
        tables[method] = pd.DataFrame(rows)
    return tables


def build_cohort(root: Path, n: int, overlays: dict[str, list[Path]], qc: list[Path], grids: list[dict],
                 seed: int = 0) -> dict:
    """The files a report job of a cohort of ``n`` subjects reads, below ``root`` (a working directory)."""
    rng = np.random.default_rng(seed)
    subjects = subject_names(n)
    results = root / "results" / DATASET
    per_subject = {}
    for method, table in per_subject_tables(subjects, rng).items():
        path = results / f"evaluation/{method}/per_subject.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        per_subject[method] = str(path.relative_to(root))
    manifest = results / "subjects.tsv"
    pd.DataFrame({"subject": subjects, "split": "test"}).to_csv(manifest, sep="\t", index=False)
    subject_overlays: dict[str, dict[str, str]] = {}
    qc_paths, geometry_paths = [], []
    for i, subject in enumerate(subjects):
        for network, sources in overlays.items():
            path = results / f"figures/overlays/{network}/{subject}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(sources[i % len(sources)], path)
            subject_overlays.setdefault(subject, {})[network] = str(path.relative_to(root))
        path = results / f"qc/preprocessing/{subject}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(qc[i % len(qc)], path)
        qc_paths.append(str(path.relative_to(root)))
        grid = dict(grids[i % len(grids)])
        scale = rng.choice([0.7, 1.5]) if rng.random() < 0.01 else rng.normal(1, 0.04)  # a failed skull-strip
        grid["shape"] = [max(1, round(s * scale ** (1 / 3))) for s in grid["shape"]]
        path = results / f"preprocessed/{subject}/geometry.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(grid))
        geometry_paths.append(str(path.relative_to(root)))
    return {"subjects": subjects, "per_subject": per_subject, "manifest": str(manifest.relative_to(root)),
            "overlays": subject_overlays, "qc": qc_paths, "geometry": geometry_paths}


def megabytes(size: float) -> str:
    return f"{size / 1e6:7.2f} MB"


def measure(root: Path, cohort: dict) -> dict[str, float]:
    """Write both pages as the rules do (in ``root``, the working directory); their sizes and write times."""
    from lesionseg.labels import LABEL_SCHEMES
    from lesionseg.reporting.gallery import Embedding
    from lesionseg.reporting.qc import QCPictures, write_qc_page
    from lesionseg.reporting.steps import write_subject_table

    embedding = Embedding.default()  # the config schema's defaults
    results = root / "results" / DATASET
    page = results / "evaluation/per_subject.html"
    qc_page = root / "results/preprocessing_qc.html"
    cwd = os.getcwd()
    os.chdir(root)  # the rules' paths are relative to the working directory
    try:
        start = time.perf_counter()
        write_subject_table(DATASET, cohort["per_subject"], cohort["manifest"], cohort["overlays"],
                            LABEL_SCHEMES["brats2013"], page.relative_to(root), embedding)
        page_s = time.perf_counter() - start
        start = time.perf_counter()
        write_qc_page([QCPictures(DATASET, cohort["subjects"], cohort["qc"], cohort["geometry"])],
                      qc_page.relative_to(root), embedding)
        qc_s = time.perf_counter() - start
    finally:
        os.chdir(cwd)
    text = page.read_text()
    return {"page": page.stat().st_size, "page_s": page_s, "page_images": text.count("data:image/"),
            "page_rows": text.count("<tr") - 1, "qc_page": qc_page.stat().st_size, "qc_s": qc_s,
            "qc_images": qc_page.read_text().count("data:image/")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[12, 300, 1251])
    parser.add_argument("--source", choices=["real", "synthetic"],
                        default="real" if REAL_DATA.is_dir() else "synthetic")
    parser.add_argument("--keep", type=Path, help="leave each cohort's pages in KEEP/<N>/")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sources = Path(tmp) / "sources"
        sources.mkdir()
        cases = ([real_case(REAL_DATA / c) for c in REAL_CASES] if args.source == "real"
                 else [synthetic_case(i) for i in range(3)])
        overlays, qc, grids = source_pictures(cases, sources)
        overlay_size = np.mean([p.stat().st_size for paths in overlays.values() for p in paths])
        qc_size = np.mean([p.stat().st_size for p in qc])
        print(f"Source pictures ({args.source}): overlay {overlay_size / 1e3:.0f} KB on average "
              f"({len(FAMILIES)} families), QC picture {qc_size / 1e3:.0f} KB.")
        print("report.html's parts that grow with N (base64): now, the two pages; before, every overlay and QC "
              "picture was an item of its own (their sum here), on top of a per-subject page that embedded every "
              "overlay at 1300 px.")
        print(f"{'N':>5} {'rows':>6} | {'per-subject page':>16} {'images':>6} {'write':>6} | {'QC page':>10} "
              f"{'images':>6} {'write':>6} | {'report: now':>12} | {'pictures as items':>17}")
        for n in args.subjects:
            root = Path(tmp) / str(n)
            cohort = build_cohort(root, n, overlays, qc, grids)
            sizes = measure(root, cohort)
            pictures = sum(os.path.getsize(root / p) for paths in cohort["overlays"].values() for p in paths.values())
            pictures += sum(os.path.getsize(root / p) for p in cohort["qc"])
            now = (sizes["page"] + sizes["qc_page"]) * BASE64
            print(f"{n:>5} {sizes['page_rows']:>6} | {megabytes(sizes['page']):>16} {sizes['page_images']:>6} "
                  f"{sizes['page_s']:5.1f}s | {megabytes(sizes['qc_page']):>10} {sizes['qc_images']:>6} "
                  f"{sizes['qc_s']:5.1f}s | {megabytes(now):>12} | {megabytes(pictures * BASE64):>17}")
            if args.keep:
                kept = args.keep / str(n)
                kept.mkdir(parents=True, exist_ok=True)
                shutil.copy(root / "results" / DATASET / "evaluation/per_subject.html", kept / "per_subject.html")
                shutil.copy(root / "results/preprocessing_qc.html", kept / "preprocessing_qc.html")
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
