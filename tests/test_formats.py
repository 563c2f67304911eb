"""Every layout preset finds subjects in a tiny fake tree of its release."""

from pathlib import Path

import pytest

from conftest import make_prefixed, make_vsd, random_image, write_image
from lesionseg.config import ConfigError, validate_config
from lesionseg.datasets import dataset_from_config


def dataset(entry: dict, name="d"):
    config = validate_config({"datasets": {name: entry}})
    return dataset_from_config(name, config["datasets"][name])


def test_brats2021_with_and_without_grade_folders(tmp_path):
    make_prefixed(tmp_path, ["BraTS2021_00000", "BraTS2021_00001"], ["flair", "t1", "t1ce", "t2"], "_")
    make_prefixed(tmp_path, ["Brats18_2013_2_1"], ["flair", "t1", "t1ce", "t2"], "_", grade="HGG")
    found = {s.subject: s for s in dataset({"format": "brats2021", "root": str(tmp_path)}).discover()}
    assert sorted(found) == ["BraTS2021_00000", "BraTS2021_00001", "Brats18_2013_2_1"]
    s = found["Brats18_2013_2_1"]
    assert list(s.images) == ["flair", "t1", "t1ce", "t2"]
    assert s.images["t1ce"] == tmp_path / "HGG" / "Brats18_2013_2_1" / "Brats18_2013_2_1_t1ce.nii.gz"
    assert s.label.name == "Brats18_2013_2_1_seg.nii.gz"


def test_brats2023_naming_and_modality_subset(tmp_path):
    make_prefixed(tmp_path, ["BraTS-GLI-00000-000"], ["t1n", "t1c", "t2w", "t2f"], "-", label_values=(0, 1, 2, 3))
    d = dataset({"format": "brats2023", "root": str(tmp_path), "modalities": ["t2f", "t1c"]})
    (s,) = d.discover()
    assert d.modalities == ("t2f", "t1c")
    assert list(s.images) == ["t2f", "t1c"]
    assert s.images["t2f"].name == "BraTS-GLI-00000-000-t2f.nii.gz"
    assert d.scheme.name == "brats2023"


def test_unknown_modality_for_a_preset_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"modalities \['swi'\] are not in this format"):
        dataset({"format": "brats2021", "root": str(tmp_path), "modalities": ["flair", "swi"]})


@pytest.mark.parametrize("fmt, grades", [("brats2013", ("HG", "LG")), ("brats2015", ("HGG", "LGG"))])
def test_brats2013_2015_metaimage_cases_below_grade_folders(tmp_path, fmt, grades):
    for grade in grades:  # the same case names in both grades must stay distinct subjects
        make_vsd(tmp_path / grade, ["0001", "0002"], ["Flair", "T1", "T1c", "T2"], ".mha",
                 label_values=(0, 1, 2, 3, 4))
    found = {s.subject: s for s in dataset({"format": fmt, "root": str(tmp_path)}).discover()}
    assert sorted(found) == [f"{g}_{c}" for g in grades for c in ("0001", "0002")]
    s = found[f"{grades[0]}_0001"]
    assert s.images["t1"].parent.name.startswith("VSD.Brain.XX.O.MR_T1.")  # T1, not T1c
    assert s.images["t1c"].parent.name.startswith("VSD.Brain.XX.O.MR_T1c.")
    assert s.images["flair"].suffix == ".mha"
    assert s.label.parent.name.startswith("VSD.Brain_3more.XX.O.OT.")


def test_isles2015_siss(tmp_path):
    make_vsd(tmp_path, ["1", "2"], ["Flair", "T1", "T2", "DWI"], ".nii", truth_prefix="VSD.Brain.XX.O.OT")
    d = dataset({"format": "isles2015", "root": str(tmp_path)})
    found = {s.subject: s for s in d.discover()}
    assert sorted(found) == ["1", "2"]
    assert found["1"].images["dwi"].name.startswith("VSD.Brain.XX.O.MR_DWI.")
    assert found["1"].label is not None and d.scheme.name == "binary"


def test_generic_templates_with_optional_truth(tmp_path):
    for s in ("sub-01", "sub-02"):
        for m in ("flair", "t1"):
            write_image(tmp_path / s / "anat" / f"{s}_{m}.nii.gz", random_image(1))
    write_image(tmp_path / "sub-01" / "anat" / "sub-01_lesion.nii.gz", random_image(2).round().clip(0, 1))
    d = dataset({
        "format": "generic", "root": str(tmp_path), "images": "{subject}/anat/{subject}_{modality}.nii.gz",
        "label": "{subject}/anat/{subject}_lesion.nii.gz", "modalities": ["flair", "t1"],
    })
    found = {s.subject: s for s in d.discover()}
    assert sorted(found) == ["sub-01", "sub-02"]
    assert found["sub-01"].label is not None and found["sub-02"].label is None


def test_subjects_and_exclude_filters(brats2021_root):
    entry = {"format": "brats2021", "root": str(brats2021_root), "exclude": ["BraTS2021_00001"]}
    assert [s.subject for s in dataset(entry).discover()] == ["BraTS2021_00000", "BraTS2021_00002", "BraTS2021_00003"]
    entry = {"format": "brats2021", "root": str(brats2021_root), "subjects": ["BraTS2021_00002", "nope"]}
    d = dataset(entry)
    found = d.discover()
    assert [s.subject for s in found] == ["BraTS2021_00002"]
    assert d.missing_listed_subjects(found) == ["nope"]


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="root folder .*not found"):
        dataset({"format": "brats2021", "root": str(tmp_path / "nowhere")}).discover()


def test_synthetic_paths_follow_the_imitated_release(tmp_path):
    tumor = dataset({"format": "synthetic", "synthetic": {"kind": "tumor", "n_subjects": 3}}, name="demo")
    assert tumor.synthetic_subjects() == ["SynthTumor_000", "SynthTumor_001", "SynthTumor_002"]
    files = tumor.synthetic_files("SynthTumor_001")
    assert files.images["t1ce"] == Path("results/demo/raw/SynthTumor_001/SynthTumor_001_t1ce.nii.gz")
    stroke = dataset({"format": "synthetic", "synthetic": {"kind": "stroke", "n_subjects": 2}}, name="s")
    files = stroke.synthetic_files("SynthStroke_001")
    assert files.images["dwi"].parent.name.startswith("VSD.Brain.XX.O.MR_DWI.")
    assert stroke.scheme.name == "binary" and tumor.scheme.name == "brats2013"
