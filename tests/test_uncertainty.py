"""Uncertainty maps (entropy, mutual information) and test-time mirroring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lesionseg.inference.dense import predict_volume
from lesionseg.inference.steps import network_probabilities
from lesionseg.inference.uncertainty import MeanPrediction, flip_spatial, mirror_flips, normalised_entropy
from lesionseg.models import build_model

SETTINGS = {"segment_size": 9, "batch_size": 2, "precision": "float32", "memory_budget_mb": 256}


def one_hot(classes: np.ndarray, n_classes: int) -> np.ndarray:
    return np.moveaxis(np.eye(n_classes, dtype=np.float32)[classes], -1, 0)


def test_entropy_is_zero_for_a_certain_and_one_for_a_uniform_prediction_whatever_the_class_count():
    for n_classes in (2, 4):
        certain = one_hot(np.zeros((3, 3, 3), dtype=int), n_classes)
        uniform = np.full((n_classes, 3, 3, 3), 1 / n_classes, dtype=np.float32)
        assert normalised_entropy(certain).max() == 0
        np.testing.assert_allclose(normalised_entropy(uniform), 1, atol=1e-6)
    # Two classes at 0.9 / 0.1: 0.469 bits.
    assert np.isclose(normalised_entropy(np.array([[0.9], [0.1]])).item(), 0.4690, atol=1e-4)
    with pytest.raises(ValueError, match="two classes"):
        normalised_entropy(np.ones((1, 2, 2, 2)))


def test_mutual_information_is_the_disagreement_between_the_averaged_predictions():
    agree, disagree = MeanPrediction(), MeanPrediction()
    a = one_hot(np.array([[[0, 1]]]), 2)
    b = one_hot(np.array([[[1, 1]]]), 2)
    for _ in range(2):
        agree.add(a)
    disagree.add(a)
    disagree.add(b)
    assert agree.mutual_information().max() == 0 and agree.count == 2
    # Voxel 0: certain predictions of opposite classes (MI 1); voxel 1: both say class 1 (MI 0).
    np.testing.assert_allclose(disagree.mutual_information().ravel(), [1, 0], atol=1e-6)
    np.testing.assert_allclose(disagree.mean()[:, 0, 0, 0], [0.5, 0.5])
    with pytest.raises(ValueError, match="cannot be averaged"):
        disagree.add(np.ones((2, 1, 1, 3)) / 2)


def test_an_average_of_averages_keeps_every_prediction_s_disagreement():
    rng = np.random.default_rng(0)
    predictions = [rng.dirichlet(np.ones(3), size=(4, 5, 2)).transpose(3, 0, 1, 2) for _ in range(4)]
    flat = MeanPrediction()
    for p in predictions:
        flat.add(p)
    members = []
    for pair in (predictions[:2], predictions[2:]):  # two members, each the mean of two predictions
        member = MeanPrediction()
        for p in pair:
            member.add(p)
        members.append(member)
    nested = MeanPrediction()
    for member in members:
        nested.add(member.mean(), member.mutual_information())
    np.testing.assert_allclose(nested.mean(), flat.mean(), atol=1e-6)
    np.testing.assert_allclose(nested.mutual_information(), flat.mutual_information(), atol=1e-5)
    assert flat.mutual_information().min() >= 0


def test_mirroring_tries_every_combination_of_flips_once():
    assert mirror_flips([]) == [()]
    assert mirror_flips([2, 0]) == [(), (0,), (2,), (0, 2)]
    assert len(set(mirror_flips([0, 1, 2]))) == 8
    with pytest.raises(ValueError, match="spatial axes"):
        mirror_flips([3])
    image = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(flip_spatial(flip_spatial(image, (0, 2)), (0, 2)), image)
    np.testing.assert_array_equal(flip_spatial(image[0], (1,), channels_first=False), image[0, :, ::-1])


def test_mirrored_inference_averages_the_flipped_back_predictions_of_the_flipped_images():
    torch.manual_seed(0)
    network = build_model("deepmedic", 2, 3, {"maps": [4] * 8, "fc_maps": [8, 8]})
    rng = np.random.default_rng(1)
    image = rng.normal(size=(2, 13, 12, 11)).astype(np.float32)
    mask = np.ones(image.shape[1:], dtype=bool)
    mask[:2] = False  # an asymmetric mask: flipped with the image
    device = torch.device("cpu")

    def predict(flip):
        p = predict_volume(network, flip_spatial(image, flip), flip_spatial(mask, flip, channels_first=False),
                           device, tile_output=9)
        return flip_spatial(p, flip)

    plain, plain_mi = network_probabilities(["n"], [network], image, mask, device, SETTINGS, progress=False)
    np.testing.assert_allclose(plain, predict(()), atol=1e-6)
    assert plain_mi.max() == 0
    mirrored, mirrored_mi = network_probabilities(["n"], [network], image, mask, device,
                                                  {**SETTINGS, "mirror_axes": [0, 2]}, progress=False)
    expected = np.mean([predict(flip) for flip in mirror_flips([0, 2])], axis=0)
    np.testing.assert_allclose(mirrored, expected, atol=1e-5)
    assert not np.allclose(mirrored, plain, atol=1e-3)  # the flips predicted otherwise ...
    assert mirrored_mi.max() > 1e-4 and mirrored_mi[~mask].max() < 1e-6  # ... inside the brain only
