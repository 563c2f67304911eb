"""The per-subject quality score: features from the probabilities, the quality model, flags and their reasons."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy import ndimage

from lesionseg.evaluation.quality import (
    LOW_DICE,
    DiceFit,
    QualityModel,
    RegionFeatures,
    assess_subject,
    fit_dice,
    fit_quality_model,
    image_features,
    quality_table,
    segmentation_features,
)



def binary_scheme():
    from lesionseg.labels import scheme_from_config

    return scheme_from_config({"classes": {"background": [0], "lesion": [1]}, "regions": {"lesion": [1]}},
                              name="lesion")


def lesion_probabilities(shape, inside: float, box=(slice(4, 8),) * 3):
    p = np.zeros((2, *shape), dtype=np.float32)
    p[0] = 1
    p[1][box], p[0][box] = inside, 1 - inside
    return p


def test_features_say_how_sure_the_probabilities_are_of_their_own_segmentation():
    scheme = binary_scheme()
    mutual_information = np.zeros((12, 12, 12), np.float32)
    certain = segmentation_features(lesion_probabilities((12, 12, 12), 1.0), mutual_information, scheme, 0.001)
    assert certain["lesion"] == RegionFeatures(volume_ml=0.064, expected_dice=1.0, uncertainty=0.0, disagreement=0.0)
    mutual_information[4:8, 4:8, 4:8] = 0.3
    hesitant = segmentation_features(lesion_probabilities((12, 12, 12), 0.6), mutual_information, scheme, 0.001)
    # 64 voxels at 0.6: expected Dice 2 * 0.6 * 64 / (0.6 * 64 + 64) = 0.75; entropy of 0.6 / 0.4 = 0.971.
    assert hesitant["lesion"].expected_dice == pytest.approx(0.75)
    assert hesitant["lesion"].uncertainty == pytest.approx(0.971, abs=1e-3)
    assert hesitant["lesion"].disagreement == pytest.approx(0.3)
    # Nothing predicted, nothing probable: a perfect (empty) segmentation by its own account; nothing predicted
    # where 64 voxels are at 0.01: the truth is empty with a chance of exp(-0.64).
    empty = segmentation_features(lesion_probabilities((12, 12, 12), 0.0), mutual_information, scheme, 0.001)
    assert empty["lesion"] == RegionFeatures(0.0, 1.0, 0.0, 0.0)
    faint = segmentation_features(lesion_probabilities((12, 12, 12), 0.01), mutual_information, scheme, 0.001)
    assert faint["lesion"].volume_ml == 0 and faint["lesion"].expected_dice == pytest.approx(np.exp(-0.64), abs=1e-5)
    # After the CRF: its (near-binary) segmentation judged by the network's probabilities.
    after_crf = segmentation_features(lesion_probabilities((12, 12, 12), 0.99), mutual_information, scheme, 0.001,
                                      network_probabilities=lesion_probabilities((12, 12, 12), 0.6))
    assert after_crf["lesion"].expected_dice == pytest.approx(0.75)
    assert after_crf["lesion"].uncertainty == pytest.approx(0.971, abs=1e-3)


def test_the_predicted_dice_is_fitted_on_enough_validation_subjects_or_left_as_the_expected_dice():
    fit = fit_dice([0.5, 0.6, 0.7, 0.8, 0.9], [0.3, 0.4, 0.5, 0.6, 0.7])
    assert fit.fitted and fit.slope == pytest.approx(1) and fit.intercept == pytest.approx(-0.2)
    assert fit.predict(0.1) == 0.0 and fit.predict(0.75) == pytest.approx(0.55)
    assert fit_dice([0.5, 0.6, 0.7], [0.3, 0.4, 0.5]) == DiceFit(subjects=3)  # too few: unfitted
    assert fit_dice([0.8] * 5, [0.1, 0.2, 0.3, 0.4, 0.5]).fitted is False  # no spread
    assert DiceFit().predict(0.7) == 0.7


def test_image_statistics_tell_noise_from_an_image():
    rng = np.random.default_rng(0)
    brain = np.zeros((30, 30, 30), bool)
    brain[3:27, 3:27, 3:27] = True
    smooth = ndimage.gaussian_filter(rng.normal(size=brain.shape), 2.0)
    noise = rng.normal(size=brain.shape)
    statistics = image_features(np.stack([smooth, noise], axis=-1), brain, ["t1", "flair"])
    assert statistics["flair"]["roughness"] == pytest.approx(0.84, abs=0.03)  # 2 / sqrt(pi) over 1.349
    assert statistics["t1"]["roughness"] < 0.4
    assert statistics["flair"]["p01"] < statistics["flair"]["p50"] < statistics["flair"]["p99"]


def model(**changes):
    base = dict(dice={"lesion": DiceFit()}, max_uncertainty={"lesion": 0.2}, max_disagreement={"lesion": 0.1},
                volume_range_ml={"lesion": (10.0, 50.0)}, never_empty=["lesion"],
                intensity_range={"flair": {"p99": (2.0, 3.0), "roughness": (0.1, 0.2)}})
    return QualityModel(**{**base, **changes})


def test_flags_name_each_reason():
    reference = model()
    fine = assess_subject("s1", {"lesion": RegionFeatures(20.0, 0.9, 0.1, 0.05)},
                          {"flair": {"p99": 2.5, "roughness": 0.15}}, reference)
    assert not fine.flagged and fine.score == pytest.approx(0.9)
    doubtful = assess_subject("s2", {"lesion": RegionFeatures(200.0, 0.4, 0.5, 0.3)},
                              {"flair": {"p99": 2.5, "roughness": 0.8}}, reference)
    reasons = " | ".join(doubtful.reasons)
    assert f"predicted Dice 0.40 < {LOW_DICE}" in reasons and "uncertainty 0.50" in reasons
    assert "disagree" in reasons and "volume 200.0 ml outside the training range 10.0-50.0 ml" in reasons
    assert "flair: intensities unlike the training images (roughness)" in reasons
    empty = assess_subject("s3", {"lesion": RegionFeatures(0.0, 1.0, 0.0, 0.0)}, None, reference)
    assert empty.reasons == ["lesion: empty, but every training subject had it"]
    # Within the margin of the training range (here half its span), or a statistic that is not checked: not
    # flagged; one training subject's range is widened by a tenth of its value.
    near = assess_subject("s4", {"lesion": RegionFeatures(20.0, 0.9, 0.1, 0.0)},
                          {"flair": {"p99": 9.0, "roughness": 0.24}}, reference)
    assert not near.flagged
    single = model(intensity_range={"flair": {"roughness": (0.5, 0.5)}})
    for roughness, flagged in ((0.54, False), (0.46, False), (0.56, True), (0.44, True)):
        assert assess_subject("s5", fine.features, {"flair": {"roughness": roughness}}, single).flagged == flagged
    rows = quality_table([fine, doubtful, empty, near])
    assert [row["subject"] for row in rows] == ["s2", "s3", "s1", "s4"]  # flagged first, then by score and name
    assert rows[0]["flagged"] and rows[0]["predicted_dice_lesion"] == 0.4 and rows[0]["volume_ml_lesion"] == 200.0


def test_the_quality_model_is_fitted_from_validation_and_training_and_survives_yaml():
    validation = {f"v{i}": {"lesion": RegionFeatures(20.0, e, 0.1 * i, 0.0)}
                  for i, e in enumerate([0.5, 0.6, 0.7, 0.8, 0.9])}
    true = {f"v{i}": {"lesion": d} for i, d in enumerate([0.3, 0.4, 0.5, 0.6, 0.7])}
    fitted = fit_quality_model(validation, true, [{"lesion": 12.0}, {"lesion": 40.0}],
                               [{"flair": {"p99": 2.0}}, {"flair": {"p99": 3.0}}], ["lesion"])
    assert fitted.dice["lesion"].fitted and fitted.dice["lesion"].predict(0.75) == pytest.approx(0.55)
    assert fitted.max_uncertainty["lesion"] == pytest.approx(0.4) and fitted.never_empty == ["lesion"]
    assert fitted.volume_range_ml["lesion"] == (12.0, 40.0)
    assert fitted.intensity_range == {"flair": {"p99": (2.0, 3.0)}}
    again = QualityModel.from_mapping(yaml.safe_load(yaml.safe_dump(fitted.to_mapping())))
    assert again.to_mapping() == fitted.to_mapping() and again.dice["lesion"].predict(0.75) == pytest.approx(0.55)
    # A training subject without the region: it may be empty.
    assert fit_quality_model(validation, true, [{"lesion": 0.0}, {"lesion": 40.0}], [], ["lesion"]).never_empty == []
    # No reference at all (an imported model file): nothing to compare with but the expected Dice.
    bare = fit_quality_model({}, {}, [], [], ["lesion"])
    assert not bare.dice["lesion"].fitted and bare.never_empty == [] and bare.volume_range_ml["lesion"] == (0, 0)
    assert not assess_subject("s", {"lesion": RegionFeatures(500.0, 0.9, 0.9, 0.9)}, None, bare).flagged


def test_the_review_page_puts_the_flagged_and_lowest_scores_first(tmp_path):
    import pandas as pd
    from PIL import Image

    from lesionseg.reporting.review import review_order, write_review_page

    a = pd.DataFrame({"subject": ["s1", "s2"], "score": [0.9, 0.3], "flagged": [False, True],
                      "reasons": ["", "WT: predicted Dice 0.30 < 0.5"], "predicted_dice_WT": [0.9, 0.3]})
    b = pd.DataFrame({"subject": ["s1", "s2"], "score": [0.6, 0.8], "flagged": [False, False], "reasons": ["", ""],
                      "predicted_dice_WT": [0.6, 0.8]})
    order = review_order({"net": a, "net+crf": b})
    assert list(zip(order["subject"], order["method"])) == [("s2", "net"), ("s1", "net+crf"), ("s2", "net+crf"),
                                                            ("s1", "net")]
    Image.new("RGB", (200, 100), "white").save(tmp_path / "s2.png")
    paths = {}
    for method, table in (("net", a), ("net+crf", b)):
        paths[method] = tmp_path / f"{method}.csv"
        table.to_csv(paths[method], index=False)
    page = tmp_path / "qc" / "review.html"
    page.parent.mkdir()
    write_review_page("demo", paths, {"s2": {"net": str(tmp_path / "s2.png")}}, page, shown=1)
    text = page.read_text()
    assert "1 of 4 segmentations flagged (2 subjects, 2 methods)" in text
    assert "s2 — net, score 0.30" in text and "WT: predicted Dice 0.30 &lt; 0.5" in text
    assert "s1 — net+crf" not in text  # only the first is shown with its overlay ...
    assert text.count("data:image/jpeg") == 1 and text.count("<tr") == 5  # ... every row is in the table


def test_broken_inputs_are_flagged_by_their_intensities_and_clean_ones_are_not():
    """Synthetic subjects normalised as the workflow does: the training images' statistics flag a noise-filled
    FLAIR, swapped FLAIR and T1, and a strong bias field in a held-out copy, not the held-out subject itself."""
    from lesionseg.preprocessing.normalisation import normalise
    from lesionseg.synthetic import synthesize_subject

    modalities = ["flair", "t1", "t1ce", "t2"]

    def statistics(images, brain):
        return image_features(normalise(images, brain, "percentile-zscore"), brain, modalities)

    subjects = [synthesize_subject("tumor", seed=0, index=i, spacing_mm=4.0) for i in range(6)]
    stacks = [(np.stack([s.images[m] for m in modalities], axis=-1), s.brain_mask > 0) for s in subjects]
    reference = fit_quality_model({}, {}, [], [statistics(*stack) for stack in stacks[:5]], ["lesion"])
    features = {"lesion": RegionFeatures(20.0, 0.9, 0.1, 0.0)}
    images, brain = stacks[5]
    assert not assess_subject("held-out", features, statistics(images, brain), reference).flagged

    rng = np.random.default_rng(0)
    noise = images.copy()
    noise[..., 0] = rng.normal(images[..., 0][brain].mean(), images[..., 0][brain].std(), size=brain.shape)
    swapped = images[..., [1, 0, 2, 3]]
    x = np.linspace(-1.0, 1.0, brain.shape[0])[:, None, None, None]
    biased = images * np.exp(1.5 * x)
    for name, broken, modality in (("noise", noise, "flair"), ("swap", swapped, "flair"), ("bias", biased, None)):
        quality = assess_subject(name, features, statistics(broken, brain), reference)
        assert quality.flagged, name
        assert all("intensities unlike the training images" in reason for reason in quality.reasons), quality.reasons
        if modality:
            assert any(reason.startswith(modality) for reason in quality.reasons), quality.reasons
