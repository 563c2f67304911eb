"""Each kind of bad input gets a message naming dataset, subject, file and what to do."""

import numpy as np
import pytest

from conftest import SHAPE, label_map, random_image, write_image
from lesionseg.cli import main as cli
from lesionseg.config import sorted_keys, validate_config
from lesionseg.datasets import dataset_from_config
from lesionseg.datasets.manifest import build_manifest, read_manifest, write_manifest, write_problems

MODS = ["flair", "t1", "t1ce", "t2"]
SUBJECT = "BraTS2021_00000"


def brats_entry(root, **extra):
    return {"format": "brats2021", "root": str(root), **extra}


def build(root, **extra):
    config = validate_config({"datasets": {"d": brats_entry(root, **extra)}})
    return build_manifest(dataset_from_config("d", config["datasets"]["d"]))


def make_subject(root, subject=SUBJECT, images=None, label=None, affine=None):
    folder = root / subject
    images = images or {}
    for j, m in enumerate(MODS):
        data = images.get(m, random_image(j))
        if data is not None:
            write_image(folder / f"{subject}_{m}.nii.gz", data, *(affine.get(m),) if affine and m in affine else ())
    write_image(folder / f"{subject}_seg.nii.gz", label_map() if label is None else label)
    return folder


def only_problem(manifest):
    assert len(manifest.problems) == 1, manifest.problems
    problem = manifest.problems[0]
    assert problem.dataset == "d" and problem.subject == SUBJECT and problem.hint
    return problem


def test_a_valid_subject_has_no_problem(tmp_path):
    make_subject(tmp_path)
    manifest = build(tmp_path)
    assert manifest.problems == [] and [s.subject for s in manifest.subjects] == [SUBJECT]


def test_missing_modality(tmp_path):
    make_subject(tmp_path, images={"t1ce": None})
    problem = only_problem(build(tmp_path))
    assert "modality 't1ce' not found" in problem.problem and "exclude" in problem.hint
    assert problem.file.endswith(f"{SUBJECT}/{SUBJECT}_t1ce.nii.gz")  # where it was looked for


def test_shape_mismatch(tmp_path):
    make_subject(tmp_path, images={"t2": random_image(0, shape=(12, 10, 9))})
    problem = only_problem(build(tmp_path))
    assert problem.file.endswith("_t2.nii.gz")
    assert "not on the grid of 't1', the reference modality: shape (12, 10, 9) differs from (12, 10, 8)" in problem.problem


def test_spacing_mismatch(tmp_path):
    make_subject(tmp_path, affine={"flair": np.diag([1.0, 1.0, 2.0, 1.0])})
    problem = only_problem(build(tmp_path))
    assert problem.file.endswith("_flair.nii.gz") and "voxel spacing" in problem.problem
    assert "resample" in problem.hint


def test_nan_values(tmp_path):
    image = random_image(0)
    image[1, 2, 3] = np.nan
    make_subject(tmp_path, images={"flair": image})
    problem = only_problem(build(tmp_path))
    assert problem.file.endswith("_flair.nii.gz") and "1 voxels are NaN or infinite" in problem.problem


def test_constant_image(tmp_path):
    make_subject(tmp_path, images={"t1": np.zeros(SHAPE, dtype=np.float32)})
    assert "image is constant" in only_problem(build(tmp_path)).problem


def test_unknown_label_value(tmp_path):
    make_subject(tmp_path, label=label_map((0, 1, 3)))  # 3 does not exist in BraTS 2021
    problem = only_problem(build(tmp_path))
    assert problem.file.endswith("_seg.nii.gz")
    assert "label values [3] are not in label scheme 'brats2021'" in problem.problem
    assert "labels:" in problem.hint


def test_unreadable_file(tmp_path):
    folder = make_subject(tmp_path)
    (folder / f"{SUBJECT}_t2.nii.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    problem = only_problem(build(tmp_path))
    assert problem.file.endswith("_t2.nii.gz") and "unreadable" in problem.problem


def test_4d_image(tmp_path):
    make_subject(tmp_path, images={"flair": np.zeros(SHAPE + (2,), dtype=np.float32)})
    assert "expected a 3D image" in only_problem(build(tmp_path)).problem


def test_skip_keeps_valid_subjects_and_lists_invalid_ones(tmp_path):
    make_subject(tmp_path)
    make_subject(tmp_path, subject="BraTS2021_00001", images={"t1": None})
    manifest = build(tmp_path, on_invalid="skip")
    assert [s.subject for s in manifest.subjects] == [SUBJECT]
    assert manifest.invalid_subjects == ["BraTS2021_00001"]
    write_manifest(tmp_path / "subjects.tsv", manifest)
    write_problems(tmp_path / "invalid.tsv", manifest.problems)
    (row,) = read_manifest(tmp_path / "subjects.tsv")
    assert list(row) == ["subject", "split", *MODS, "label", "brain_mask"] and row["t1ce"].endswith("_t1ce.nii.gz")
    assert "BraTS2021_00001" in (tmp_path / "invalid.tsv").read_text()


def test_user_files_are_never_modified(tmp_path):
    folder = make_subject(tmp_path)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    build(tmp_path)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()} == before


def test_check_command_reports_problems_and_exit_status(tmp_path, capsys):
    root = tmp_path / "data"
    make_subject(root)
    make_subject(root, subject="BraTS2021_00001", label=label_map((0, 9)))
    config = tmp_path / "config.yaml"
    config.write_text(f"datasets:\n  mine:\n    format: brats2021\n    root: {root}\n")
    assert cli(["check", "--configfile", str(config)]) == 1
    out = capsys.readouterr().out
    assert "mine" in out and "brats2021" in out and "1 invalid" in out
    assert "BraTS2021_00001" in out and "label values [9]" in out

    (root / "BraTS2021_00001" / "BraTS2021_00001_seg.nii.gz").unlink()  # no truth is fine: test split
    assert cli(["check", "--configfile", str(config)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("mine"))
    assert line.split()[2:4] == ["2", "1"]  # found, labelled


def test_check_command_reports_config_errors(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("datasets:\n  x:\n    format: brats2099\n")
    assert cli(["check", "--configfile", str(config)]) == 1
    assert "datasets/x/format" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["datasets: [", "- a list\n"])
def test_check_command_reports_bad_yaml(tmp_path, capsys, content):
    config = tmp_path / "config.yaml"
    config.write_text(content)
    assert cli(["check", "--configfile", str(config)]) == 1
    assert str(config) in capsys.readouterr().err


def test_sorted_keys_is_recursive_and_keeps_list_order():
    config = {"b": {"z": 1, "a": [{"y": 2, "x": 3}, 5]}, "a": [3, 1, 2]}
    canonical = sorted_keys(config)
    assert canonical == config
    assert list(canonical) == ["a", "b"] and list(canonical["b"]) == ["a", "z"]
    assert list(canonical["b"]["a"][0]) == ["x", "y"] and canonical["a"] == [3, 1, 2]


def test_sorted_keys_keeps_the_order_of_label_classes():
    """Class order is the network's output order (class 0 holds the background): never sorted."""
    config = {"datasets": {"mine": {"labels": {"classes": {"normal": [0], "lesion": [1]}}, "root": "x"}}}
    canonical = sorted_keys(config)
    assert list(canonical["datasets"]["mine"]["labels"]["classes"]) == ["normal", "lesion"]
    assert list(canonical["datasets"]["mine"]) == ["labels", "root"]


def test_label_maps_stored_as_floats_are_accepted_when_integral(tmp_path):
    make_subject(tmp_path, label=label_map().astype(np.float32))
    assert build(tmp_path).problems == []


def test_non_integral_label_values_are_named(tmp_path):
    label = label_map().astype(np.float32)
    label[5, 5, 5] = 0.5
    label[6, 5, 5] = 1.25
    make_subject(tmp_path, label=label)
    problem = only_problem(build(tmp_path))
    assert problem.file.endswith("_seg.nii.gz") and "non-integer values, e.g. [0.5, 1.25]" in problem.problem
    assert "nearest neighbour" in problem.hint


def test_modalities_on_other_grids_are_fine_with_coregistration_and_explained_without(tmp_path):
    shifted = np.diag([1.0, 1.0, 1.0, 1.0])
    shifted[:3, 3] = [2.0, 0, 0]
    make_subject(tmp_path, images={"flair": random_image(0, shape=(14, 10, 8))}, affine={"flair": shifted})
    problem = only_problem(build(tmp_path))
    assert problem.file.endswith("_flair.nii.gz") and "the file itself is fine" in problem.problem
    assert "coregister: {enabled: true}" in problem.hint
    assert build(tmp_path, preprocessing={"coregister": {"enabled": True}}).problems == []


# --- brain masks given with the data ('mask:') ------------------------------------------------------

TINY_BRAIN_ML = {"skull_strip": {"brain_volume_ml": [0.1, 2.0]}}  # the tiny test images hold about 1 ml


def mask_entry(root, **extra):
    return {"mask": "{subject}/{subject}_brainmask.nii.gz", "preprocessing": TINY_BRAIN_ML, **extra}


def write_mask(root, data, affine=None, subject=SUBJECT):
    return write_image(root / subject / f"{subject}_brainmask.nii.gz", data, *(affine,) if affine is not None else ())


def test_a_given_mask_is_used_and_listed_in_the_manifest(tmp_path):
    make_subject(tmp_path)
    write_mask(tmp_path, np.ones(SHAPE, dtype=np.float64))
    config = validate_config({"datasets": {"d": brats_entry(tmp_path, **mask_entry(tmp_path))}})
    dataset = dataset_from_config("d", config["datasets"]["d"])
    assert dataset.preprocessing["skull_strip"]["method"] == "given"
    manifest = build_manifest(dataset)
    assert manifest.problems == []
    write_manifest(tmp_path / "subjects.tsv", manifest)
    (row,) = read_manifest(tmp_path / "subjects.tsv")
    assert row["brain_mask"].endswith(f"{SUBJECT}/{SUBJECT}_brainmask.nii.gz")


@pytest.mark.parametrize("mask, affine, message", [
    (None, None, "brain mask not found"),
    (np.ones((12, 10, 9)), None, "brain mask not on the grid of 't1'"),
    (np.full(SHAPE, 0.4), None, "brain mask is empty (no voxel > 0.5"),
    (np.ones(SHAPE), np.diag([2.0, 2.0, 2.0, 1.0]), "brain mask not on the grid"),
])
def test_bad_given_masks_are_explained(tmp_path, mask, affine, message):
    make_subject(tmp_path)
    if mask is not None:
        write_mask(tmp_path, mask, affine)
    problem = only_problem(build(tmp_path, **mask_entry(tmp_path)))
    assert problem.file.endswith("_brainmask.nii.gz") and message in problem.problem, problem


def test_an_unreadable_given_mask_is_explained(tmp_path):
    make_subject(tmp_path)
    (tmp_path / SUBJECT / f"{SUBJECT}_brainmask.nii.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    problem = only_problem(build(tmp_path, **mask_entry(tmp_path)))
    assert problem.file.endswith("_brainmask.nii.gz") and "unreadable brain mask" in problem.problem
    assert "re-copy" in problem.hint


def test_a_given_mask_of_implausible_volume_is_explained(tmp_path):
    make_subject(tmp_path)
    write_mask(tmp_path, np.ones(SHAPE))
    problem = only_problem(build(tmp_path, mask="{subject}/{subject}_brainmask.nii.gz"))
    assert "brain mask of 1 ml, outside the plausible range 600-2500 ml" in problem.problem
    assert "brain_volume_ml" in problem.hint


def test_a_given_mask_is_ignored_when_another_skull_strip_method_is_chosen(tmp_path):
    make_subject(tmp_path)  # no mask file at all
    entry = mask_entry(tmp_path, preprocessing={"skull_strip": {"method": "robex"}})
    assert build(tmp_path, **entry).problems == []


def test_method_given_without_masks_and_masks_for_the_synthetic_cohort_are_config_errors(tmp_path):
    from lesionseg.config import ConfigError

    config = validate_config({"datasets": {"d": brats_entry(tmp_path,
                                                            preprocessing={"skull_strip": {"method": "given"}})}})
    with pytest.raises(ConfigError, match="method 'given' needs the dataset's brain masks: add 'mask:'"):
        dataset_from_config("d", config["datasets"]["d"])
    config = validate_config({"datasets": {"s": {"format": "synthetic", "synthetic": {}, "mask": "{subject}.nii"}}})
    with pytest.raises(ConfigError, match="'mask:' does not apply"):
        dataset_from_config("s", config["datasets"]["s"])


# --- generic layouts: one template per modality, free placeholders -----------------------------------

def test_generic_templates_per_modality_with_a_split_folder(tmp_path):
    """DeepMedic's example layout: {train,validation,test}/<case>/<Modality>_subtrMeanDivStd.nii.gz."""
    for folder, case in [("train", "pat5"), ("test", "pat1")]:
        write_image(tmp_path / folder / case / "Flair_z.nii.gz", random_image(1))
        write_image(tmp_path / folder / case / "T1c_z.nii.gz", random_image(2))
        write_image(tmp_path / folder / case / "labels.nii.gz", label_map((0, 1)).astype(np.float32))
        write_image(tmp_path / folder / case / "brainmask.nii.gz", np.ones(SHAPE))
    entry = {"format": "generic", "root": str(tmp_path),
             "images": {"t1c": "{split}/{subject}/T1c_z.nii.gz", "flair": "{split}/{subject}/Flair_z.nii.gz"},
             "label": "{split}/{subject}/labels.nii.gz", "mask": "{split}/{subject}/brainmask.nii.gz",
             "preprocessing": TINY_BRAIN_ML}
    config = sorted_keys(validate_config({"datasets": {"d": entry}}))
    dataset = dataset_from_config("d", config["datasets"]["d"])
    assert dataset.modalities == ("t1c", "flair")  # the templates' order is the channel order, even sorted
    manifest = build_manifest(dataset)
    assert manifest.problems == [] and [s.subject for s in manifest.subjects] == ["pat1", "pat5"]
    pat5 = manifest.subjects[1]
    assert pat5.images["flair"] == tmp_path / "train/pat5/Flair_z.nii.gz"
    assert pat5.label == tmp_path / "train/pat5/labels.nii.gz" and pat5.mask == tmp_path / "train/pat5/brainmask.nii.gz"


def test_generic_templates_that_cannot_be_filled_are_config_errors(tmp_path):
    from lesionseg.config import ConfigError

    entry = {"format": "generic", "root": str(tmp_path), "images": "{subject}/{modality}.nii.gz",
             "modalities": ["t1"], "label": "{site}/{subject}/seg.nii.gz"}
    config = validate_config({"datasets": {"d": entry}})
    with pytest.raises(ConfigError, match=r"uses \['site'\], which the first modality's template"):
        dataset_from_config("d", config["datasets"]["d"])
    entry = {"format": "generic", "root": str(tmp_path), "images": "{subject}/{modality}.nii.gz"}
    with pytest.raises(ConfigError, match="'modalities:' is missing"):
        dataset_from_config("d", validate_config({"datasets": {"d": entry}})["datasets"]["d"])


def test_a_subject_found_in_two_folders_is_an_error(tmp_path):
    from lesionseg.config import ConfigError

    for folder in ("train", "test"):
        write_image(tmp_path / folder / "pat1" / "t1.nii.gz", random_image(1))
    entry = {"format": "generic", "root": str(tmp_path), "images": "{split}/{subject}/{modality}.nii.gz",
             "modalities": ["t1"]}
    dataset = dataset_from_config("d", validate_config({"datasets": {"d": entry}})["datasets"]["d"])
    with pytest.raises(ConfigError, match=r"subject names found twice .*\['pat1'\]"):
        dataset.discover()
