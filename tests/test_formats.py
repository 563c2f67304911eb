"""Every layout preset finds subjects in a tiny fake tree of its release."""

from pathlib import Path

import pytest

from conftest import label_map, make_prefixed, make_vsd, random_image, write_image
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


def write_images(paths) -> None:
    """A tiny image at each path (a lesion map where the name says it is a truth file)."""
    for i, path in enumerate(paths):
        truth = path.name.endswith(("_msk.nii.gz", "_mask.nii.gz", "Consensus.nii.gz"))
        write_image(path, label_map((0, 1)) if truth else random_image(i))


def test_brats2023_finds_every_brats2024_subchallenge_in_one_root(tmp_path):
    keys = ["t1n", "t1c", "t2w", "t2f"]
    make_prefixed(tmp_path, ["BraTS-GLI-02073-100", "BraTS-MEN-00004-000"], keys, "-", label_values=(0, 1, 2, 3, 4))
    for challenge, subject in [("MET", "BraTS-MET-00001-000"), ("PED", "BraTS-PED-00001-000"),
                               ("SSA", "BraTS-SSA-00002-000")]:
        make_prefixed(tmp_path, [subject], keys, "-", label_values=(0, 1, 2, 3), grade=f"BraTS2024-{challenge}")
    d = dataset({"format": "brats2023", "root": str(tmp_path)})
    found = {s.subject: s for s in d.discover()}
    assert sorted(found) == ["BraTS-GLI-02073-100", "BraTS-MEN-00004-000", "BraTS-MET-00001-000",
                             "BraTS-PED-00001-000", "BraTS-SSA-00002-000"]
    ped = found["BraTS-PED-00001-000"]
    assert ped.images["t2f"] == tmp_path / "BraTS2024-PED" / ped.subject / f"{ped.subject}-t2f.nii.gz"
    assert found["BraTS-MEN-00004-000"].label == tmp_path / "BraTS-MEN-00004-000" / "BraTS-MEN-00004-000-seg.nii.gz"
    assert 4 in d.scheme.allowed_values  # 2024 resection cavity


def isles2022_session(root: Path, subject: str, session: str = "ses-0001", folders: bool = True,
                      flair: str = "FLAIR", truth: bool = True) -> dict[str, Path]:
    """An ISLES 2022 session below ``root`` (the folder of the sub-* folders), its truth in ``root/../derivatives``
    when ``root`` is ``rawdata``, else in ``root/derivatives``; returns the paths written, by modality."""
    folder, prefix = root / subject / session, f"{subject}_{session}"
    paths = {
        "dwi": folder / ("dwi" if folders else "") / f"{prefix}_dwi.nii.gz",
        "adc": folder / ("dwi" if folders else "") / f"{prefix}_adc.nii.gz",
        "flair": folder / ("anat" if folders else "") / f"{prefix}_{flair}.nii.gz",
    }
    derivatives = root.parent / "derivatives" if root.name == "rawdata" else root / "derivatives"
    if truth:
        paths["label"] = derivatives / subject / session / f"{prefix}_msk.nii.gz"
    write_images(paths.values())
    return paths


def test_isles2022_release_with_rawdata_and_derivatives(tmp_path):
    first = isles2022_session(tmp_path / "rawdata", "sub-strokecase0001")
    isles2022_session(tmp_path / "rawdata", "sub-strokecase0002", truth=False)
    d = dataset({"format": "isles2022", "root": str(tmp_path)})
    assert d.modalities == ("dwi", "adc", "flair") and d.scheme.name == "binary"
    found = {s.subject: s for s in d.discover()}
    assert sorted(found) == ["sub-strokecase0001", "sub-strokecase0002"]
    s = found["sub-strokecase0001"]
    assert s.images == {m: first[m] for m in ("dwi", "adc", "flair")}
    assert s.images["flair"].parent.name == "anat"
    assert s.label == first["label"]
    assert found["sub-strokecase0002"].label is None


def test_isles2022_sub_folders_in_root_without_datatype_folders(tmp_path):
    flat = isles2022_session(tmp_path, "sub-strokecase0003", folders=False, flair="flair")
    isles2022_session(tmp_path, "sub-strokecase0004", session="ses-0001")
    isles2022_session(tmp_path, "sub-strokecase0004", session="ses-0002", truth=False)
    flat["adc"].unlink()
    found = {s.subject: s for s in dataset({"format": "isles2022", "root": str(tmp_path)}).discover()}
    assert sorted(found) == ["sub-strokecase0003", "sub-strokecase0004_ses-0001", "sub-strokecase0004_ses-0002"]
    s = found["sub-strokecase0003"]
    assert s.images["dwi"] == flat["dwi"] and s.images["flair"] == flat["flair"]
    prefix = "sub-strokecase0003_ses-0001"
    assert s.label == tmp_path / "derivatives" / "sub-strokecase0003" / "ses-0001" / f"{prefix}_msk.nii.gz"
    # A missing modality is reported where the release keeps it.
    assert s.images["adc"] is None
    assert s.expected["adc"] == tmp_path / "sub-strokecase0003" / "ses-0001" / "dwi" / f"{prefix}_adc.nii.gz"
    assert found["sub-strokecase0004_ses-0001"].label is not None
    assert found["sub-strokecase0004_ses-0002"].label is None


def test_isles2022_preprocessing_registers_every_modality_to_the_dwi(tmp_path):
    settings = dataset({"format": "isles2022", "root": str(tmp_path)}).preprocessing
    assert settings["reference"] == "dwi"
    assert settings["coregister"]["enabled"] is True
    assert settings["skull_strip"]["method"] == "none"  # released skull-stripped


def atlas2_session(cohort: Path, subject: str, session: str = "ses-1", space: str = "MNI152NLin2009aSym",
                   truth: bool = True) -> dict[str, Path]:
    """An ATLAS v2.0 session in a cohort folder (e.g. ``Training/R001``); returns the paths written."""
    anat, prefix = cohort / subject / session / "anat", f"{subject}_{session}_space-{space}"
    paths = {"t1": anat / f"{prefix}_T1w.nii.gz"}
    if truth:
        paths["label"] = anat / f"{prefix}_label-L_desc-T1lesion_mask.nii.gz"
    write_images(paths.values())
    return paths


def test_atlas2_training_testing_and_cohort_roots(tmp_path):
    training = tmp_path / "Training"
    first = atlas2_session(training / "R001", "sub-r001s001")
    atlas2_session(training / "R001", "sub-r001s002", space="orig")  # matched by suffix, not by space
    atlas2_session(training / "R002", "sub-r002s001", session="ses-1")
    atlas2_session(training / "R002", "sub-r002s001", session="ses-2")
    atlas2_session(tmp_path / "Testing" / "R005", "sub-r005s040", truth=False)
    d = dataset({"format": "atlas2", "root": str(tmp_path)})
    assert d.modalities == ("t1",) and d.scheme.name == "binary"
    found = {s.subject: s for s in d.discover()}
    assert sorted(found) == ["sub-r001s001", "sub-r001s002", "sub-r002s001_ses-1", "sub-r002s001_ses-2",
                             "sub-r005s040"]
    assert found["sub-r001s001"].images["t1"] == first["t1"]
    assert found["sub-r001s001"].label == first["label"]
    assert found["sub-r001s002"].images["t1"].name == "sub-r001s002_ses-1_space-orig_T1w.nii.gz"
    assert found["sub-r005s040"].images["t1"] is not None and found["sub-r005s040"].label is None

    def names(root: Path) -> list[str]:
        return sorted(s.subject for s in dataset({"format": "atlas2", "root": str(root)}).discover())

    assert names(training) == ["sub-r001s001", "sub-r001s002", "sub-r002s001_ses-1", "sub-r002s001_ses-2"]
    assert names(training / "R001") == ["sub-r001s001", "sub-r001s002"]


def test_atlas2_preprocessing_strips_the_skull_with_robex(tmp_path):
    settings = dataset({"format": "atlas2", "root": str(tmp_path)}).preprocessing
    assert settings["skull_strip"]["method"] == "robex" and settings["reference"] == "t1"


def msseg2016_patient(patient: Path, truth: bool = True, tags=("FLAIR", "T1", "T2", "DP", "GADO")) -> dict[str, Path]:
    """A MICCAI 2016 MSSEG patient folder; returns the paths written, by modality."""
    paths = {tag.lower(): patient / "Preprocessed_Data" / f"{tag}_preprocessed.nii.gz" for tag in tags}
    if truth:
        paths["label"] = patient / "Masks" / "Consensus.nii.gz"
    write_images(paths.values())
    return paths


def test_msseg2016_patients_directly_below_root(tmp_path):
    first = msseg2016_patient(tmp_path / "01016SACH")
    msseg2016_patient(tmp_path / "07003SATH", tags=("FLAIR", "T1", "T2", "DP"))
    d = dataset({"format": "msseg2016", "root": str(tmp_path)})
    assert d.modalities == ("flair", "t1", "t2", "dp", "gado") and d.scheme.name == "binary"
    assert d.preprocessing["skull_strip"]["method"] == "none"  # Preprocessed_Data are brain-masked
    found = {s.subject: s for s in d.discover()}
    assert sorted(found) == ["01016SACH", "07003SATH"]
    assert found["01016SACH"].images == {m: first[m] for m in ("flair", "t1", "t2", "dp", "gado")}
    assert found["01016SACH"].label == first["label"]
    assert found["07003SATH"].images["gado"] is None
    assert found["07003SATH"].expected["gado"] == tmp_path / "07003SATH/Preprocessed_Data/GADO_preprocessed.nii.gz"


def test_msseg2016_patients_below_centre_folders_get_unique_names(tmp_path):
    first = msseg2016_patient(tmp_path / "Training" / "Center_01" / "Patient_01")
    msseg2016_patient(tmp_path / "Training" / "Center_07" / "Patient_01")
    msseg2016_patient(tmp_path / "Testing" / "Center_03" / "Patient_01", truth=False)
    found = {s.subject: s for s in dataset({"format": "msseg2016", "root": str(tmp_path / "Training")}).discover()}
    assert sorted(found) == ["Center_01_Patient_01", "Center_07_Patient_01"]
    assert found["Center_01_Patient_01"].images["flair"] == first["flair"]
    assert found["Center_01_Patient_01"].label == first["label"]
    found = {s.subject: s for s in dataset({"format": "msseg2016", "root": str(tmp_path)}).discover()}
    assert sorted(found) == ["Testing_Center_03_Patient_01", "Training_Center_01_Patient_01",
                             "Training_Center_07_Patient_01"]
    assert found["Testing_Center_03_Patient_01"].label is None
