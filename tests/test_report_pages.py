"""The report's pages: summary tables with grouped headers, the per-subject page, the run overview, the CRF plot."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
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
from lesionseg.reporting.pages import anchor, table_html
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


def test_subject_page_sorts_and_links_each_subject_to_its_embedded_overlays(tmp_path):
    picture = tmp_path / "s1.png"
    figure = Figure(figsize=(2, 1))
    FigureCanvasAgg(figure)
    figure.savefig(picture, format="png")
    page = subject_table_html(results(), {"s1": "test", "s2": "val"}, {"s1": [picture]}, SCHEME, "demo")
    assert f"<a href='#{anchor('s1')}'>s1</a>" in page and f"id='{anchor('s1')}'" in page
    assert "s2</td>" in page and "href='#overlay-s2'" not in page  # no overlay, no link
    assert page.count("data:image/jpeg;base64,") == 1
    assert "<table class='sortable'>" in page and "th.sortable" in page
    assert anchor("sub-01/ses 1") == "overlay-sub-01_ses_1"


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
