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
    assert "not on the grid of 'flair': shape (12, 10, 9) differs from (12, 10, 8)" in problem.problem


def test_spacing_mismatch(tmp_path):
    make_subject(tmp_path, affine={"t1": np.diag([1.0, 1.0, 2.0, 1.0])})
    problem = only_problem(build(tmp_path))
    assert problem.file.endswith("_t1.nii.gz") and "voxel spacing" in problem.problem
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
    assert list(row) == ["subject", "split", *MODS, "label"] and row["t1ce"].endswith("_t1ce.nii.gz")
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
