"""The report's pages: summary tables with grouped headers, the per-subject page, the QC page, the run overview, the
CRF plot."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lesionseg.evaluation.metrics import METRICS
from lesionseg.labels import LABEL_SCHEMES
from lesionseg.reporting.figures import crf_effect_figure
from lesionseg.reporting.overview import (
    CRFUse,
    DatasetRun,
    crf_uses_of,
    overview_html,
    RunTime,
    run_time_of,
    split_counts,
)
from lesionseg.reporting.gallery import Embedding, fixed_sample
from lesionseg.reporting.pages import SORT_SCRIPT, anchor, sortable_table_html, table_html
from lesionseg.reporting.qc import QCPictures, brain_box_ml, qc_page_html, write_qc_page
from lesionseg.reporting.steps import subject_rows, subject_table_html, summary_html

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCHEME = LABEL_SCHEMES["brats2021"]


def results(with_lesionwise: bool = True) -> pd.DataFrame:
    """Methods m and m+crf on subjects s2, s1 (with truth) and u (without), regions WT, TC, ET."""
    records = []
    for method, gain in (("m", 0.0), ("m+crf", 0.05)):
        for subject, dice in (("s2", 0.8), ("s1", 0.6), ("u", np.nan)):
            for region in SCHEME.regions:
                row = {"method": method, "subject": subject, "region": region, **dict.fromkeys(METRICS, np.nan)}
                if subject == "u":
                    row["volume_prediction_mm3"] = 1500.0
                else:
                    row.update(dice=dice + gain, sensitivity=0.7, precision=0.9, specificity=0.999987,
                               hd95=4.0 - 10 * gain, assd=1.0, volume_truth_mm3=2000.0,
                               volume_prediction_mm3=1800.0)
                    if with_lesionwise:
                        row.update(lesionwise_dice=dice, lesionwise_hd95=20.0, truth_lesions=2.0,
                                   detected_lesions=1.0, false_positive_lesions=1.0, lesion_f1=0.5)
                records.append(row)
    frame = pd.DataFrame(records)
    frame["method"] = pd.Categorical(frame["method"], categories=["m", "m+crf"], ordered=True)
    return frame


def cells(page: str, tag: str = "td") -> list[str]:
    return [html.unescape(re.sub("<[^>]+>", "", c)) for c in re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", page)]


def test_table_html_groups_headings_and_aligns_numbers_right_and_text_left():
    table = pd.DataFrame({("", "n"): ["4"], ("Dice", "WT"): ["0.912"], ("Dice", "ET"): ["0.800"],
                          ("HD95 (mm)", "WT"): ["3.1"]}, index=pd.Index(["deepmedic"], name="Method"))
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    page = table_html(table)
    assert "<th class='group start' colspan='2'>Dice</th>" in page
    assert "<th class='group start' colspan='1'>HD95 (mm)</th>" in page
    assert "<td class='text'>deepmedic</td>" in page and "<td class='number start'>0.912</td>" in page
    notes = table_html(pd.DataFrame({"Method": ["a"], "Note": ["1 zero difference dropped"]}), index=False)
    assert "<td class='text'>1 zero difference dropped</td>" in notes  # text that starts with a digit stays text


def test_summary_page_has_the_papers_layout_regions_and_lesion_wise_table():
    page = summary_html(results(), SCHEME, "demo")
    headings = cells(page, "th")
    for group in ("Dice", "Sensitivity", "Precision", "HD95 (mm)", "Lesion-wise Dice", "Lesion F1"):
        assert group in headings
    assert "Specificity" not in headings  # 0.99998... for everyone: not a headline number
    assert "0.750" in cells(page)  # m+crf's mean WT Dice, one number per cell
    assert "WT (whole tumour): labels 1 necrotic_non_enhancing, 2 edema, 4 enhancing" in page
    assert "Smallest p" in headings and "0.500" in cells(page)  # 2 pairs: p can never go below 0.5
    assert "Subjects without truth" in page
    without = summary_html(results(with_lesionwise=False), SCHEME, "demo")
    assert "Lesion-wise" not in cells(without, "th")  # older per-subject tables: no empty columns


def test_summary_page_compares_networks_only_when_there_are_two():
    assert "Methods compared" not in summary_html(results(), SCHEME, "demo")  # m and m+crf: one network
    two = results().assign(method=lambda f: f["method"].astype(str).replace({"m+crf": "other"}))
    section = summary_html(two, SCHEME, "demo").split("Methods compared")[1].split("<h2>")[0]
    assert "Better mean" in cells(section, "th")
    # m against other on WT Dice: means over s1 and s2, other's higher by 0.05 on both.
    assert cells(section)[:9] == ["m", "other", "WT", "Dice", "2", "0.700", "0.750", "-0.050", "other"]


def test_subject_rows_are_in_subject_order_with_splits_and_every_metric():
    table = subject_rows(results(), {"s1": "test", "s2": "test", "u": "test"})
    assert list(table["Subject"].unique()) == ["s1", "s2", "u"]
    assert list(table["Method"][:6]) == ["m"] * 3 + ["m+crf"] * 3
    assert list(table["Region"][:3]) == ["WT", "TC", "ET"]
    first = table.iloc[0]
    assert first["Dice"] == "0.600" and first["Spec."] == "0.99999" and first["Truth ml"] == "2.00"
    assert first["T/D/FP"] == "2/1/1"
    unlabelled = table[table["Subject"] == "u"].iloc[0]
    assert unlabelled["Dice"] == "–" and unlabelled["Pred. ml"] == "1.50"


def picture(path, width=200, height=100) -> str:
    """A small PNG (a stand-in for an overlay or a QC picture)."""
    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    FigureCanvasAgg(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return str(path)


def test_subject_page_sorts_and_links_each_subject_to_its_embedded_overlays(tmp_path):
    overlay = picture(tmp_path / "overlays" / "m" / "s1.png", width=1000)
    page = subject_table_html(results(), {"s1": "test", "s2": "val"}, {"s1": {"m": overlay}}, SCHEME, "demo",
                              page_dir=tmp_path / "evaluation")
    assert f"<a href='#{anchor('s1')}'>s1</a>" in page and f"id='{anchor('s1')}'" in page
    assert "s2</td>" in page and "href='#overlay-s2'" not in page  # no overlay, no link
    assert page.count("data:image/jpeg;base64,") == 1
    assert "width='480'" in page  # a thumbnail, linked to the full-size file beside the page
    assert "<a href='../overlays/m/s1.png'" in page
    # Every row of s1's network family names its overlay; s2 has none.
    assert cells(page).count("m/s1.png") == 6 and "<table class='sortable' id='subjects'>" in page
    assert "th.sortable" in page and "text-align: right" in page
    assert anchor("sub-01/ses 1") == "overlay-sub-01_ses_1"


def test_a_long_sortable_table_keeps_every_row_and_shows_a_page_of_them_at_a_time():
    table = pd.DataFrame({"Subject": [f"s{i}" for i in range(7)], "Dice": [f"0.{i}" for i in range(7)]})
    short = sortable_table_html(table, {"Subject": {"s1": "#one"}}, page_rows=7)
    assert "pager" not in short and " hidden" not in short and "<td><a href='#one'>s1</a></td>" in short
    assert "#rows td:nth-child(2) { text-align: right" in short  # numbers right-aligned, text left
    paged = sortable_table_html(table, page_rows=3)
    assert cells(paged) == list(table.to_numpy().ravel())  # every row is in the page, in order
    assert paged.count("<tr hidden>") == 4 and "rows 1–3 of 7" in paged and "data-table='rows'" in paged
    assert "div.pager" in SORT_SCRIPT and "th.sortable" in SORT_SCRIPT


def cohort(n: int, tmp_path) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """Methods m and m+crf (one network family) on n subjects with truth, regions WT, TC, ET: subject k's Dice is
    0.5 + k / (2n) in every region, m+crf's 0.01 higher; and each subject's overlay."""
    shared = picture(tmp_path / "overlay.png")
    records, overlays = [], {}
    for k in range(n):
        subject = f"sub-{k:04d}"
        for method, gain in (("m", 0.0), ("m+crf", 0.01)):
            for region in SCHEME.regions:
                records.append({"method": method, "subject": subject, "region": region,
                                **dict.fromkeys(METRICS, np.nan), "dice": 0.5 + k / (2 * n) + gain, "hd95": 3.0})
        path = tmp_path / "overlays" / "m" / f"{subject}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.hardlink_to(shared)
        overlays[subject] = {"m": str(path)}
    frame = pd.DataFrame(records)
    frame["method"] = pd.Categorical(frame["method"], categories=["m", "m+crf"], ordered=True)
    return frame, overlays


def embedded(page: str) -> list[str]:
    """The subjects whose overlays a page embeds, in order."""
    return [html.unescape(s) for s in re.findall(r"<div class='shown' id='overlay-([^']+)'>", page)]


def test_a_large_cohort_embeds_the_lowest_dice_and_a_fixed_sample_and_keeps_every_subject_in_the_table(tmp_path):
    embedding = Embedding(all_up_to=10, worst=3, sample=4)
    frame, overlays = cohort(40, tmp_path)
    splits = dict.fromkeys(overlays, "test")
    page = subject_table_html(frame, splits, overlays, SCHEME, "big", embedding)
    lowest = ["sub-0000", "sub-0001", "sub-0002"]  # m+crf's (the best method's) lowest Dice, in every region
    sample = fixed_sample(list(overlays), 4)
    assert embedded(page) == lowest + [s for s in sample if s not in lowest]
    assert page.count("data:image/jpeg;base64,") == len(embedded(page))
    assert "lowest WT Dice: 0.510 (1st, m+crf)" in page
    table = cells(page)
    assert all(table.count(s) == 6 for s in overlays)  # every subject: 2 methods x 3 regions, with its metrics
    assert all(table.count(f"m/{s}.png") == 6 for s in overlays)  # and the path of its full-size overlay
    not_shown = next(s for s in overlays if s not in embedded(page))
    assert f"href='#overlay-{not_shown}'" not in page and f"href='#overlay-{sample[0]}'" in page
    # A new subject changes the sample by one member at most; the page's size does not grow with the cohort.
    grown_frame, grown = cohort(41, tmp_path / "grown")
    grown_page = subject_table_html(grown_frame, dict.fromkeys(grown, "test"), grown, SCHEME, "big", embedding)
    assert len(set(fixed_sample(list(grown), 4)) - set(sample)) <= 1
    assert len(embedded(grown_page)) <= 3 + 4
    # A small cohort embeds every subject, in order, without a reason.
    frame, overlays = cohort(10, tmp_path / "small")
    small = subject_table_html(frame, dict.fromkeys(overlays, "test"), overlays, SCHEME, "small", embedding)
    assert embedded(small) == list(overlays) and "lowest" not in small.split("<h2 id='overlays'>")[1]


def grid(path, shape) -> str:
    """A preprocessing grid (geometry.json) of 1 mm voxels and the given shape."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"original_shape": [200, 200, 200], "original_affine": np.eye(4).tolist(),
                                "start": [0, 0, 0], "step": [1, 1, 1], "shape": list(shape)}))
    return str(path)


def test_qc_page_embeds_every_subject_of_a_small_dataset_and_the_unusual_brain_boxes_of_a_large_one(tmp_path):
    shared = picture(tmp_path / "qc.png")
    subjects = [f"s{i:02d}" for i in range(30)]
    shapes = {s: (100, 100, 100) for s in subjects} | {"s07": (150, 150, 150), "s11": (60, 100, 100)}
    pictures = []
    for s in subjects:
        path = tmp_path / "qc" / f"{s}.png"
        path.parent.mkdir(exist_ok=True)
        path.hardlink_to(shared)
        pictures.append(str(path))
    grids = [grid(tmp_path / "grids" / s / "geometry.json", shapes[s]) for s in subjects]
    assert brain_box_ml(grids[7]) == pytest.approx(3375.0)
    large = QCPictures("big", subjects, pictures, grids)
    small = QCPictures("small", subjects[:5], pictures[:5], grids[:5])
    embedding = Embedding(all_up_to=5, worst=2, sample=3)
    page = qc_page_html([small, large], embedding, page_dir=tmp_path)
    ids = re.findall(r"<div class='shown' id='overlay-([^']+)'>", page)
    unusual = ["s07-big", "s11-big"]  # 3.4 and 0.6 times the median
    assert ids == [f"{s}-small" for s in subjects[:5]] + unusual + [
        f"{s}-big" for s in fixed_sample(subjects, 3) if f"{s}-big" not in unusual]
    assert "3.38 × the median" in page and "<a href='#qc-big'>big</a>" in page
    assert cells(page).count("s29.png") == 1 and "1000" in cells(page)  # every subject's row: box, picture
    write_qc_page([small], tmp_path / "out" / "qc.html", embedding)
    assert "<a href='../qc/s00.png'" in (tmp_path / "out" / "qc.html").read_text()


def test_split_counts_order_splits_as_a_reader_expects(tmp_path):
    manifest = tmp_path / "subjects.tsv"
    splits = ["test", "fold10", "train", "fold2", "val", "train", "unlabelled"]
    pd.DataFrame({"subject": [f"s{i}" for i in range(len(splits))], "split": splits}).to_csv(manifest, sep="\t",
                                                                                               index=False)
    assert split_counts(manifest) == "train 2 · val 1 · test 1 · fold2 1 · fold10 1 · unlabelled 1"


def test_overview_lists_datasets_crf_parameters_machine_and_wall_time(tmp_path):
    manifest = tmp_path / "subjects.tsv"
    pd.DataFrame({"subject": ["a", "b"], "split": ["train", "test"]}).to_csv(manifest, sep="\t", index=False)
    tuned = tmp_path / "results" / "demo" / "crf" / "deepmedic" / "parameters.yaml"
    tuned.parent.mkdir(parents=True)
    parameters = {"iterations": 5, "smoothness_weight": 0.688, "smoothness_sigma_mm": [4.554] * 3,
                  "appearance_weight": 8.046, "appearance_sigma_mm": [18.6, 18.6, 9.0],
                  "intensity_sigma": [1.05, 18.9], "intensity_range": [-3.1, 3.1]}
    tuned.write_text(yaml.safe_dump({"parameters": parameters, "validation_subjects": ["c", "d"],
                                     "mean_dice": 0.87, "network_mean_dice": 0.80}))
    uses = crf_uses_of({"demo": {"deepmedic": {"tuned": str(tuned), "parameters": {}},
                                 "havaei": {"tuned": None, "parameters": parameters}}})
    assert uses[0] == CRFUse("demo", "deepmedic", parameters,
                             "tuned on 2 validation subjects of demo: Dice 0.800 → 0.870")
    assert uses[1].origin.startswith("configured")
    page = overview_html([DatasetRun("demo", manifest, "brats2013", ["flair", "t1"], ["deepmedic", "deepmedic+crf"])],
                         uses, {"CPU": "a CPU, 2 logical cores", "GPUs": "none"}, {"lesionseg": "1.0"},
                         RunTime(3725.0, 5000.0, 9000.0))
    values = cells(page)
    assert "train 1 · test 1" in values and "deepmedic, deepmedic+crf" in values
    assert "4.55" in values and "18.60, 18.60, 9.00" in values  # isotropic sigma once, anisotropic per axis
    assert any(v.startswith("62.1 min from the first benchmarked job's start") for v in values)
    assert "83.3 min summed over the benchmarked jobs, 2.5 h of CPU" in values
    assert "lesionseg 1.0" in values and "a CPU, 2 logical cores" in values


def test_run_time_spans_every_dataset_and_sums_the_jobs(tmp_path):
    first, second, idle = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    first.write_text(yaml.safe_dump({"start": "2026-12-01T10:00:00+00:00", "end": "2026-12-01T10:30:00+00:00",
                                     "job_s": 100.0, "cpu_s": 150.0}))
    second.write_text(yaml.safe_dump({"start": "2026-12-01T10:20:00+00:00", "end": "2026-12-01T11:00:05+00:00",
                                      "job_s": 20.0, "cpu_s": 10.0}))
    idle.write_text(yaml.safe_dump({"start": None, "end": None, "benchmarked_jobs": 0, "job_s": 0.0, "cpu_s": 0.0}))
    assert run_time_of([first, second, idle]) == RunTime(3605.0, 120.0, 160.0)
    assert run_time_of([idle]).span_s is None


def test_crf_effect_figure_draws_each_pair_and_says_when_there_is_none(tmp_path):
    scored = results()
    assert crf_effect_figure(scored, list(SCHEME.regions), tmp_path / "crf.png", SCHEME.region_colours)
    assert (tmp_path / "crf.png").read_bytes().startswith(PNG_SIGNATURE)
    alone = scored[scored["method"] == "m"]
    assert not crf_effect_figure(alone, list(SCHEME.regions), tmp_path / "none.png", SCHEME.region_colours)
    assert (tmp_path / "none.png").read_bytes().startswith(PNG_SIGNATURE)
