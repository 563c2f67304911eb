"""The synthetic head generator: determinism, geometry, truth, contrasts, acquisition effects, QC picture."""

from __future__ import annotations

import numpy as np
import pytest

from lesionseg.labels import LABEL_SCHEMES
from lesionseg.synthetic import KINDS, MODALITIES, SyntheticSubject, save_qc_png, synthesize_subject
from lesionseg.synthetic import contrast
from lesionseg.synthetic.subject import Simulation, simulate

SPACING_MM = 3.0
TUMOUR = {"seed": 0, "index": 0}
STROKE = {"seed": 0, "index": 1}


@pytest.fixture(scope="module")
def tumour() -> Simulation:
    return simulate("tumor", TUMOUR["seed"], TUMOUR["index"], SPACING_MM)


@pytest.fixture(scope="module")
def stroke() -> Simulation:
    return simulate("stroke", STROKE["seed"], STROKE["index"], SPACING_MM)


@pytest.fixture(scope="module", params=KINDS)
def simulation(request, tumour: Simulation, stroke: Simulation) -> Simulation:
    return {"tumor": tumour, "stroke": stroke}[request.param]


def pure(sim: Simulation, tissue: str) -> np.ndarray:
    """Healthy voxels made mostly of ``tissue`` (few voxels are pure CSF or GM at 3 mm)."""
    return (sim.tissue_fractions[tissue] > 0.85) & (sim.subject.label == 0)


def mean_in(image: np.ndarray, mask: np.ndarray) -> float:
    assert mask.sum() > 20, "too few voxels for a stable mean"
    return float(image[mask].mean())


def assert_same_subject(a: SyntheticSubject, b: SyntheticSubject) -> None:
    assert a.kind == b.kind and a.images.keys() == b.images.keys()
    for name in a.images:
        np.testing.assert_array_equal(a.images[name], b.images[name])
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_array_equal(a.brain_mask, b.brain_mask)
    np.testing.assert_array_equal(a.affine, b.affine)


# -- determinism -------------------------------------------------------------


def test_same_seed_and_index_give_identical_subjects():
    assert_same_subject(synthesize_subject("tumor", 5, 2, 4.0), synthesize_subject("tumor", 5, 2, 4.0))


def test_different_index_gives_a_different_subject():
    first, second = synthesize_subject("stroke", 5, 2, 4.0), synthesize_subject("stroke", 5, 3, 4.0)
    assert not np.array_equal(first.label, second.label)
    assert not np.array_equal(first.brain_mask, second.brain_mask)
    assert not np.array_equal(first.images["t1"], second.images["t1"])


def test_synthesize_subject_is_the_subject_of_simulate(tumour: Simulation):
    assert_same_subject(synthesize_subject("tumor", TUMOUR["seed"], TUMOUR["index"], SPACING_MM), tumour.subject)


# -- geometry and truth ------------------------------------------------------


def test_arrays_have_the_documented_types_and_geometry(simulation: Simulation):
    subject = simulation.subject
    assert tuple(subject.images) == MODALITIES[subject.kind]
    shape = subject.label.shape
    for image in subject.images.values():
        assert image.dtype == np.float32 and image.shape == shape
        assert np.isfinite(image).all() and image.min() >= 0.0
    assert subject.label.dtype == np.uint8
    assert subject.brain_mask.dtype == np.uint8 and subject.brain_mask.shape == shape
    assert set(np.unique(subject.brain_mask).tolist()) == {0, 1}
    assert subject.affine.shape == (4, 4)
    # Isotropic, axis-aligned, RAS+ (positive diagonal).
    np.testing.assert_allclose(subject.affine[:3, :3], np.diag([SPACING_MM] * 3))
    np.testing.assert_array_equal(subject.affine[3], [0, 0, 0, 1])


def test_label_values_follow_the_kind(simulation: Simulation):
    expected = {"tumor": {0, 1, 2, 3, 4}, "stroke": {0, 1}}[simulation.subject.kind]
    assert set(np.unique(simulation.subject.label).tolist()) == expected


def test_lesion_lies_inside_the_brain_mask(simulation: Simulation):
    subject = simulation.subject
    assert not subject.label[subject.brain_mask == 0].any()


def test_brain_mask_is_a_head_sized_brain_away_from_the_border(simulation: Simulation):
    mask = simulation.subject.brain_mask
    litres = mask.sum() * SPACING_MM**3 / 1e6
    assert 1.0 <= litres <= 1.9
    for axis in range(3):
        assert not mask.take([0, -1], axis=axis).any()


def test_tissue_fractions_partition_each_voxel(simulation: Simulation):
    fractions = simulation.tissue_fractions
    total = sum(fractions.values())
    assert min(f.min() for f in fractions.values()) >= -1e-6
    assert total.max() <= 1.0 + 1e-5
    # Brain mask = GM + WM + CSF + lesion covering most of the voxel.
    brain = total - fractions["skull"] - fractions["scalp"]
    np.testing.assert_array_equal(simulation.subject.brain_mask, (brain > 0.5).astype(np.uint8))


def test_skull_and_scalp_surround_the_brain_with_signal(tumour: Simulation):
    subject, fractions = tumour.subject, tumour.tissue_fractions
    t1 = subject.images["t1"]
    wm = mean_in(t1, pure(tumour, "wm"))
    outside = subject.brain_mask == 0
    bright_outside_ml = np.count_nonzero(outside & (t1 > 0.5 * wm)) * SPACING_MM**3 / 1e3
    assert bright_outside_ml > 100.0
    assert mean_in(t1, fractions["scalp"] > 0.9) > wm  # fat is bright on T1
    assert mean_in(t1, fractions["skull"] > 0.9) < 0.3 * wm  # bone is dark
    assert mean_in(subject.images["flair"], fractions["skull"] > 0.9) < 0.3 * mean_in(
        subject.images["flair"], pure(tumour, "wm")
    )


# -- contrasts ---------------------------------------------------------------


def test_t1_white_matter_brighter_than_grey_brighter_than_csf(simulation: Simulation):
    t1 = simulation.subject.images["t1"]
    wm, gm, csf = (mean_in(t1, pure(simulation, t)) for t in ("wm", "gm", "csf"))
    assert wm > gm > csf


def test_t2_and_flair_healthy_contrasts(simulation: Simulation):
    t2, flair = simulation.subject.images["t2"], simulation.subject.images["flair"]
    assert mean_in(t2, pure(simulation, "csf")) > mean_in(t2, pure(simulation, "gm")) > mean_in(
        t2, pure(simulation, "wm")
    )
    # FLAIR suppresses CSF; grey matter stays brighter than white.
    assert mean_in(flair, pure(simulation, "gm")) > mean_in(flair, pure(simulation, "wm")) > mean_in(
        flair, pure(simulation, "csf")
    )


def test_tumour_compartments_show_their_contrasts(tumour: Simulation):
    images, label = tumour.subject.images, tumour.subject.label
    wm = pure(tumour, "wm")
    assert mean_in(images["flair"], label == 2) > 1.3 * mean_in(images["flair"], wm)
    assert mean_in(images["t2"], label == 2) > mean_in(images["t2"], wm)
    enhancing = mean_in(images["t1ce"], label == 4)
    assert enhancing > 1.3 * mean_in(images["t1ce"], label == 1)
    assert enhancing > mean_in(images["t1ce"], wm)
    assert mean_in(images["t2"], label == 1) > mean_in(images["t2"], wm)  # necrosis is fluid


def test_stroke_lesion_bright_on_dwi_and_flair_dark_on_t1(stroke: Simulation):
    images, label, mask = stroke.subject.images, stroke.subject.label, stroke.subject.brain_mask
    healthy_brain = (mask == 1) & (label == 0)
    assert mean_in(images["dwi"], label == 1) > 1.5 * mean_in(images["dwi"], healthy_brain)
    assert mean_in(images["flair"], label == 1) > mean_in(images["flair"], healthy_brain)
    assert mean_in(images["t1"], label == 1) < mean_in(images["t1"], healthy_brain)


# -- acquisition effects -----------------------------------------------------


def white_matter_spread_over_octants(sim: Simulation) -> dict[str, float]:
    """Per modality: (max - min) / mean of the pure-WM mean intensity over the brain's 8 octants."""
    wm = pure(sim, "wm")
    centre = np.argwhere(sim.subject.brain_mask).mean(axis=0)
    x, y, z = np.indices(wm.shape)
    octant = 4 * (x >= centre[0]) + 2 * (y >= centre[1]) + (z >= centre[2])
    spread = {}
    for name, image in sim.subject.images.items():
        means = np.array([mean_in(image, wm & (octant == k)) for k in range(8)])
        spread[name] = float((means.max() - means.min()) / means.mean())
    return spread


def test_bias_field_makes_white_matter_intensity_vary_over_the_brain(tumour: Simulation, monkeypatch):
    with_bias = white_matter_spread_over_octants(tumour)
    monkeypatch.setattr(contrast, "BIAS_LOG_STD_RANGE", (0.0, 0.0))
    without_bias = white_matter_spread_over_octants(simulate("tumor", TUMOUR["seed"], TUMOUR["index"], SPACING_MM))
    assert min(with_bias.values()) > 0.04
    assert max(without_bias.values()) < 0.025


def test_background_holds_rician_noise_only(simulation: Simulation):
    air = sum(simulation.tissue_fractions.values()) < 1e-4
    assert air.mean() > 0.2
    for name, image in simulation.subject.images.items():
        background = image[air]
        wm = mean_in(image, pure(simulation, "wm"))
        assert 0.0 < background.mean() < 0.1 * wm, name
        # Magnitude of pure complex Gaussian noise is Rayleigh: mean / std = 1.91.
        assert 1.7 < background.mean() / background.std() < 2.1, name


# -- QC picture and arguments ------------------------------------------------


def test_save_qc_png_writes_a_png_atomically(tmp_path, tumour: Simulation):
    path = tmp_path / "qc" / "subject.png"
    save_qc_png(tumour.subject, path, LABEL_SCHEMES["brats2013"], title="tumour 0")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert [p.name for p in path.parent.iterdir()] == ["subject.png"]


def test_unknown_kind_is_rejected_with_the_allowed_kinds():
    with pytest.raises(ValueError, match="tumor, stroke"):
        synthesize_subject("glioma", 0, 0, 4.0)


@pytest.mark.parametrize("spacing_mm", [0.0, -2.0, float("nan"), 50.0])
def test_bad_spacing_is_rejected(spacing_mm):
    with pytest.raises(ValueError, match="spacing_mm"):
        synthesize_subject("tumor", 0, 0, spacing_mm)


def test_head_template_is_an_average_noise_free_head_with_its_mask():
    from lesionseg.synthetic import head_template

    template = head_template("t1", spacing_mm=4.0)
    assert template.image.shape == template.brain_mask.shape
    volume_ml = template.brain_mask.sum() * 4.0**3 / 1000
    assert 1100 < volume_ml < 1800
    outside = (template.brain_mask == 0) & (template.image > 0.5)  # scalp fat around the brain
    assert outside.sum() > 0.2 * template.brain_mask.sum()
    again = head_template("t1", spacing_mm=4.0)
    np.testing.assert_array_equal(template.image, again.image)
    with pytest.raises(ValueError, match="no synthetic contrast"):
        head_template("pd")
