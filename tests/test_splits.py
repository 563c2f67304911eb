from collections import Counter

import pytest

from lesionseg.datasets.splits import assign_splits, hash_split, read_split_file

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def test_splits_are_deterministic_and_near_the_fractions():
    subjects = [f"s{i:04d}" for i in range(2000)]
    first = assign_splits(subjects, subjects, FRACTIONS, seed=3)
    assert first == assign_splits(subjects, subjects, FRACTIONS, seed=3)
    counts = Counter(first.values())
    assert counts["train"] == pytest.approx(1200, abs=90)
    assert counts["val"] == pytest.approx(400, abs=70)
    assert assign_splits(subjects, subjects, FRACTIONS, seed=4) != first


def test_adding_subjects_never_moves_existing_ones():
    old = [f"s{i}" for i in range(50)]
    new = old + [f"new{i}" for i in range(30)]
    before = assign_splits(old, old, FRACTIONS, seed=0)
    after = assign_splits(new, new, FRACTIONS, seed=0)
    assert all(after[s] == before[s] for s in old)


def test_unlabelled_subjects_go_to_test():
    splits = assign_splits(["a", "b", "c"], ["a"], {"train": 1.0, "val": 0.0, "test": 0.0}, seed=0)
    assert splits == {"a": "train", "b": "test", "c": "test"}


def test_split_file_overrides_and_others_fall_back_to_hash(tmp_path):
    path = tmp_path / "split.tsv"
    path.write_text("subject\tsplit\na\tval\nb\ttest\n")
    splits = assign_splits(["a", "b", "c"], ["a", "b", "c"], FRACTIONS, seed=0, split_file=path)
    assert splits["a"] == "val" and splits["b"] == "test"
    assert splits["c"] == hash_split("c", FRACTIONS, 0)


def test_bad_split_file_names_the_line(tmp_path):
    path = tmp_path / "split.tsv"
    path.write_text("subject\tsplit\na\ttrainn\n")
    with pytest.raises(ValueError, match="line 2: split 'trainn'"):
        read_split_file(path)
    path.write_text("name,split\n")
    with pytest.raises(ValueError, match="needs the columns"):
        read_split_file(path)
