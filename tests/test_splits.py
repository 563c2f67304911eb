from collections import Counter

import pytest

from lesionseg.datasets.splits import CohortSplits, assign_splits, fold_name, hash_split, read_split_file

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


def test_cohort_splits_give_each_fold_model_the_other_folds_and_keep_manifest_order():
    subjects = [f"s{i:03d}" for i in range(60)]
    unlabelled = set(subjects[::7])
    entry = {"folds": 3, "test": 0.1, "val": 0.25, "seed": 4}
    splits = assign_splits(subjects, [s for s in subjects if s not in unlabelled], {"train": 0, "val": 0.25,
                                                                                    "test": 0.1}, 4, folds=3)
    cohort = CohortSplits(splits, [s for s in subjects if s not in unlabelled], entry)
    assert cohort.subjects() == subjects and cohort.subjects("test") == [s for s in subjects if splits[s] == "test"]
    members = [cohort.labelled_in(fold_name(k)) for k in range(3)]
    assert cohort.out_of_fold() == [s for fold in members for s in fold]
    assert not unlabelled & set(cohort.out_of_fold()) and unlabelled <= set(cohort.subjects("test"))
    for k in range(3):
        others = [s for j in range(3) if j != k for s in members[j]]
        training, validation = cohort.training(k), cohort.validation(k)
        assert validation and sorted(training + validation) == sorted(others)
        assert training == [s for s in others if s not in validation]  # in manifest order, fold by fold
    assert cohort.validation() == cohort.out_of_fold()
    cohort.training(0).clear()  # callers get lists of their own
    assert cohort.training(0)


def test_cohort_splits_without_folds_are_the_labelled_train_and_val_subjects():
    splits = {"a": "train", "b": "val", "c": "train", "d": "test", "e": "val"}
    cohort = CohortSplits(splits, ["a", "b", "d"], {"train": 0.6, "val": 0.2, "test": 0.2})
    assert cohort.training() == ["a"] and cohort.validation() == ["b"] and cohort.out_of_fold() == []
