"""The dense CRF (lesionseg.crf): agreement with pydensecrf, the lattice, parameters, masks, errors, behaviour."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from lesionseg.crf import CRFParameters, MeanFieldCRF, PermutohedralLattice, dense_crf, tuning
from lesionseg.labels import LABEL_SCHEMES

# Parameters for the synthetic cases (1 mm voxels): DeepMedic's, with intensity sigmas wide enough for the
# appearance kernel to couple voxels on these noisy images.
PARAMETERS_2D = CRFParameters(iterations=5, smoothness_weight=3.0, smoothness_sigma_mm=(3.0, 3.0),
                              appearance_weight=5.0, appearance_sigma_mm=(5.0, 5.0), intensity_sigma=(12.0, 20.0))
PARAMETERS_3D = CRFParameters(iterations=5, intensity_sigma=(10.0, 15.0, 20.0, 12.0))


def synthetic_case(shape: tuple[int, ...], n_modalities: int, n_classes: int, seed: int,
                   noise: float = 1.6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blobs of classes 1.. on background 0, z-scored noisy images, noisy network probabilities."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    truth = np.zeros(shape, dtype=np.int64)
    for label in range(1, n_classes):
        for _ in range(2):
            centre = [rng.uniform(0.25 * n, 0.75 * n) for n in shape]
            radii = [rng.uniform(0.1 * n, 0.2 * n) for n in shape]
            inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) < 1
            truth[inside] = label
    means = rng.normal(0, 1.5, size=(n_modalities, n_classes))
    images = means[:, truth] + rng.normal(0, 0.6, size=(n_modalities,) + shape)
    images = (images - images.mean(axis=tuple(range(1, images.ndim)), keepdims=True)) \
        / images.std(axis=tuple(range(1, images.ndim)), keepdims=True)
    logits = 2.0 * np.moveaxis(np.eye(n_classes)[truth], -1, 0) + rng.normal(0, noise, (n_classes,) + shape)
    probabilities = np.exp(logits - logits.max(axis=0))
    probabilities /= probabilities.sum(axis=0)
    return probabilities.astype(np.float32), images.astype(np.float32), truth


def reference_crf(probabilities: np.ndarray, images: np.ndarray, spacing, parameters: CRFParameters) -> np.ndarray:
    """pydensecrf (Krähenbühl's densecrf) on the same unaries and features."""
    densecrf = pytest.importorskip("pydensecrf.densecrf")
    n_classes, shape = probabilities.shape[0], probabilities.shape[1:]
    unary = -np.log(np.clip(probabilities, 1e-8, None)).reshape(n_classes, -1).astype(np.float32)
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")).reshape(
        len(shape), -1)
    spacing = np.asarray(spacing, dtype=np.float32)[:, None]
    low, high = parameters.intensity_range
    sigmas = np.asarray(parameters.intensity_sigmas(images.shape[0]), dtype=np.float32)[:, None]
    intensity = (np.clip(images.reshape(images.shape[0], -1), low, high) - low) * np.float32(255 / (high - low))
    crf = densecrf.DenseCRF(int(np.prod(shape)), n_classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    smooth = index * spacing / np.asarray(parameters.smoothness_sigma_mm, dtype=np.float32)[:, None]
    crf.addPairwiseEnergy(np.ascontiguousarray(smooth, dtype=np.float32), compat=parameters.smoothness_weight)
    position = index * spacing / np.asarray(parameters.appearance_sigma_mm, dtype=np.float32)[:, None]
    bilateral = np.concatenate([position, intensity / sigmas])
    crf.addPairwiseEnergy(np.ascontiguousarray(bilateral, dtype=np.float32), compat=parameters.appearance_weight)
    return np.asarray(crf.inference(parameters.iterations), dtype=np.float32).reshape(probabilities.shape)


@pytest.mark.parametrize(("shape", "n_modalities", "n_classes", "parameters", "spacing"), [
    ((120, 100), 2, 3, PARAMETERS_2D, (1.0, 1.2)),
    ((40, 36, 30), 4, 4, PARAMETERS_3D, (1.0, 1.0, 1.5)),
])
def test_agrees_with_pydensecrf(shape, n_modalities, n_classes, parameters, spacing):
    probabilities, images, _ = synthetic_case(shape, n_modalities, n_classes, seed=len(shape))
    ours = dense_crf(probabilities, images, spacing, parameters)
    reference = reference_crf(probabilities, images, spacing, parameters)
    network = probabilities.argmax(axis=0)
    changed = np.mean(reference.argmax(axis=0) != network)
    assert changed > 0.05, f"the CRF should change many labels on this case (changed {changed:.1%})"
    agreement = np.mean(ours.argmax(axis=0) == reference.argmax(axis=0))
    difference = np.abs(ours - reference).mean()
    assert agreement >= 0.99, f"labels agree on {agreement:.3%} of voxels (mean abs difference {difference:.2e})"
    assert difference < 1e-3, f"marginals differ: mean abs difference {difference:.2e}"
    assert ours.dtype == np.float32 and ours.shape == probabilities.shape
    np.testing.assert_allclose(ours.sum(axis=0), 1.0, atol=1e-5)


def test_exact_smoothness_close_to_lattice():
    probabilities, images, _ = synthetic_case((36, 32, 28), 2, 3, seed=5)
    parameters = CRFParameters(intensity_sigma=(10.0, 10.0))
    lattice = dense_crf(probabilities, images, (1, 1, 1), parameters)
    exact = dense_crf(probabilities, images, (1, 1, 1), parameters, smoothness="exact")
    assert np.mean(lattice.argmax(axis=0) == exact.argmax(axis=0)) >= 0.99


# -- the lattice --------------------------------------------------------------------------------------------------


def densecrf_lattice_filter(features: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A direct port of densecrf's Permutohedral::init and compute (hash table, per point loops)."""
    features, values = np.asarray(features, np.float32), np.asarray(values, np.float32)
    n, d = features.shape
    r1 = d + 1
    inv_std_dev = np.float32(math.sqrt(2 / 3) * r1)
    scale = [np.float32(1 / math.sqrt((i + 2) * (i + 1)) * float(inv_std_dev)) for i in range(d)]
    canonical = [[i if j <= d - i else i - r1 for j in range(r1)] for i in range(r1)]
    down = np.float32(1 / r1)
    table: dict[tuple[int, ...], int] = {}
    offsets = np.zeros((n, r1), dtype=np.int64)
    weights = np.zeros((n, r1), dtype=np.float32)
    for k in range(n):
        elevated = np.zeros(r1, np.float32)
        total = np.float32(0)
        for j in range(d, 0, -1):
            cf = np.float32(features[k, j - 1] * scale[j - 1])
            elevated[j] = np.float32(total - np.float32(j) * cf)
            total = np.float32(total + cf)
        elevated[0] = total
        v = np.round(elevated * down).astype(np.float32)  # SSE rounding: half to even
        rem0 = v * r1
        shift = int(v.sum())
        rank = np.zeros(r1, dtype=np.int64)
        for i in range(d):
            for j in range(i + 1, r1):
                if elevated[i] - rem0[i] < elevated[j] - rem0[j]:
                    rank[i] += 1
                else:
                    rank[j] += 1
        for i in range(r1):
            rank[i] += shift
            if rank[i] < 0:
                rank[i] += r1
                rem0[i] += r1
            elif rank[i] > d:
                rank[i] -= r1
                rem0[i] -= r1
        barycentric = np.zeros(r1 + 1, np.float32)
        for i in range(r1):
            t = np.float32((elevated[i] - rem0[i]) * down)
            barycentric[d - rank[i]] += t
            barycentric[d - rank[i] + 1] -= t
        barycentric[0] += np.float32(1) + barycentric[r1]
        for r in range(r1):
            key = tuple(int(rem0[i] + canonical[r][rank[i]]) for i in range(d))
            offsets[k, r] = table.setdefault(key, len(table))
            weights[k, r] = barycentric[r]
    keys = list(table)
    lattice = np.zeros((len(keys) + 1, values.shape[1]), np.float32)  # row 0: absent neighbour
    for k in range(n):
        for r in range(r1):
            lattice[offsets[k, r] + 1] += weights[k, r] * values[k]
    for j in range(r1):
        blurred = lattice.copy()
        for i, key in enumerate(keys):
            n1, n2 = [x - 1 for x in key], [x + 1 for x in key]
            if j < d:
                n1[j], n2[j] = key[j] + d, key[j] - d
            blurred[i + 1] = lattice[i + 1] + 0.5 * (lattice[table.get(tuple(n1), -1) + 1]
                                                     + lattice[table.get(tuple(n2), -1) + 1])
        lattice = blurred
    alpha = 1 / (1 + 2 ** (-d))
    out = np.zeros_like(values)
    for k in range(n):
        for r in range(r1):
            out[k] += weights[k, r] * lattice[offsets[k, r] + 1] * alpha
    return out


@pytest.mark.parametrize(("d", "spread", "n"), [(1, 6.0, 60), (2, 3.0, 200), (3, 10.0, 300), (5, 8.0, 300),
                                               (7, 40.0, 250)])
def test_lattice_matches_densecrf_algorithm(d, spread, n):
    rng = np.random.default_rng(d)
    features = (rng.random((n, d)) * spread - spread / 3).astype(np.float32)
    quarter = n // 4
    features[:quarter] = features[quarter:2 * quarter] + 0.05  # near neighbours: shared vertices
    features[-5:] = features[-10:-5]  # duplicates
    values = rng.random((n, 2)).astype(np.float32)
    expected = densecrf_lattice_filter(features, values)
    for max_code in (None, 1):  # packed codes; the exact staged numbering (forced)
        lattice = PermutohedralLattice(torch.from_numpy(features)) if max_code is None else \
            PermutohedralLattice(torch.from_numpy(features), max_code=max_code)
        assert lattice.exact_fallback == (max_code is not None)
        np.testing.assert_allclose(lattice.filter(torch.from_numpy(values)).numpy(), expected, rtol=1e-4, atol=1e-5)
    if d == 7:
        assert 0 < lattice.n_isolated < n, "the case should exercise isolated simplices"


def test_lattice_close_to_gaussian_filter():
    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.random((1500, 3)).astype(np.float32) * 5)
    smooth = torch.sin(features[:, :1]) + torch.cos(0.7 * features[:, 1:2] - features[:, 2:3])  # smooth field
    values = torch.cat([torch.ones(1500, 1), smooth], dim=1)
    lattice = PermutohedralLattice(features)
    approximate = lattice.filter(values).double()
    exact = torch.exp(-torch.cdist(features.double(), features.double()) ** 2 / 2) @ values.double()
    # Up to a scale the lattice filter is the Gaussian: within a few % for ones, and normalised.
    ratio = approximate[:, 0] / exact[:, 0]
    assert float(ratio.std() / ratio.mean()) < 0.05
    normalised = approximate[:, 1] / approximate[:, 0]
    expected = exact[:, 1] / exact[:, 0]
    error = float((normalised - expected).abs().mean())
    effect = float((smooth[:, 0].double() - expected).abs().mean())  # how much the exact filter changes the field
    assert error < 0.1 * effect, f"normalised lattice filter off by {error:.3f} (filtering changes by {effect:.3f})"


def test_lattice_rejects_bad_input():
    with pytest.raises(ValueError, match="points, dimensions"):
        PermutohedralLattice(torch.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        PermutohedralLattice(torch.tensor([[0.0, float("nan")]]))
    lattice = PermutohedralLattice(torch.rand(10, 2))
    with pytest.raises(ValueError, match="values must be"):
        lattice.filter(torch.ones(9, 1))


# -- parameters ---------------------------------------------------------------------------------------------------


def test_parameters_defaults_are_deepmedics():
    parameters = CRFParameters()
    assert parameters.iterations == 5
    assert (parameters.smoothness_weight, parameters.smoothness_sigma_mm) == (3.0, (3.0, 3.0, 3.0))
    assert (parameters.appearance_weight, parameters.appearance_sigma_mm) == (5.0, (5.0, 5.0, 5.0))
    assert parameters.intensity_sigma == 3.0 and parameters.intensity_range == (-3.1, 3.1)


def test_parameters_round_trip():
    yaml = pytest.importorskip("yaml")
    parameters = CRFParameters(iterations=3, smoothness_weight=2.5, smoothness_sigma_mm=(2.0, 2.0),
                               appearance_sigma_mm=(4.0, 6.0), intensity_sigma=(3.0, 7.5, 9.0))
    mapping = parameters.to_mapping()
    assert mapping["smoothness_sigma_mm"] == [2.0, 2.0] and mapping["intensity_sigma"] == [3.0, 7.5, 9.0]
    assert CRFParameters.from_mapping(yaml.safe_load(yaml.safe_dump(mapping))) == parameters
    assert CRFParameters.from_mapping(CRFParameters().to_mapping()) == CRFParameters()
    assert CRFParameters.from_mapping({}) == CRFParameters()
    assert CRFParameters.from_mapping({"intensity_sigma": 5, "intensity_range": [-2, 2]}) == \
        CRFParameters(intensity_sigma=5.0, intensity_range=(-2.0, 2.0))


@pytest.mark.parametrize(("mapping", "message"), [
    ({"iteration": 5, "weight": 1}, "unknown CRF parameter.*iteration.*weight"),
    ({"iterations": -1}, "iterations"),
    ({"iterations": 2.5}, "iterations"),
    ({"smoothness_weight": -1}, "smoothness_weight"),
    ({"smoothness_sigma_mm": [3, 0, 3]}, "smoothness_sigma_mm"),
    ({"appearance_sigma_mm": [5, 5, 5, 5]}, "appearance_sigma_mm"),
    ({"smoothness_sigma_mm": [3, 3]}, "same number of axes"),
    ({"intensity_sigma": [3, -1]}, "intensity_sigma"),
    ({"intensity_sigma": 0}, "intensity_sigma"),
    ({"intensity_range": [3, -3]}, "intensity_range"),
])
def test_parameters_reject_bad_values(mapping, message):
    with pytest.raises(ValueError, match=message):
        CRFParameters.from_mapping(mapping)


# -- inputs, mask, behaviour --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_case():
    return synthetic_case((24, 22, 20), 2, 3, seed=11)


@pytest.mark.parametrize(("change", "message"), [
    (lambda p, i, s, k: (p[:, :-1], i, s, k), "images must be"),
    (lambda p, i, s, k: (p, i[:1, :, :-1], s, k), "images must be"),
    (lambda p, i, s, k: (p[:1], i, s, k), "at least 2 classes"),
    (lambda p, i, s, k: (p, i, (1, 1), k), "spacing has 2 values"),
    (lambda p, i, s, k: (p, i, (1, 0, 1), k), "spacing must be positive"),
    (lambda p, i, s, k: (p, i, s, CRFParameters(intensity_sigma=(3, 3, 3))), "intensity_sigma has 3 values"),
    (lambda p, i, s, k: (p, i, s, CRFParameters(smoothness_sigma_mm=(3, 3), appearance_sigma_mm=(5, 5))),
     "2 axes but the image has 3"),
    (lambda p, i, s, k: (p[..., 0], i[..., 0], (1, 1), k), "3 axes but the image has 2"),
    (lambda p, i, s, k: (np.where(p > 0.5, np.nan, p), i, s, k), "probabilities must be finite"),
    (lambda p, i, s, k: (p, np.where(i > 1, np.inf, i), s, k), "images must be finite"),
    (lambda p, i, s, k: (p[0, 0], i[0, 0], (1, 1), k), "2 or 3 spatial axes"),
])
def test_rejects_bad_input(small_case, change, message):
    probabilities, images, _ = small_case
    arguments = change(probabilities, images, (1.0, 1.0, 1.0), CRFParameters())
    with pytest.raises(ValueError, match=message):
        dense_crf(*arguments)
    with pytest.raises(ValueError, match="mask shape"):
        dense_crf(probabilities, images, (1, 1, 1), mask=np.ones((3, 3, 3), bool))


def test_mask_bounding_box(small_case):
    probabilities, images, _ = small_case
    mask = np.zeros(probabilities.shape[1:], dtype=bool)
    mask[5:15, 4:18, 3:12] = True
    mask[5:8, 4:8, 3:6] = False  # box corner outside the mask
    parameters = CRFParameters(intensity_sigma=10.0)
    out = dense_crf(probabilities, images, (1, 1, 1), parameters, mask=mask)
    outside = np.ones_like(mask)
    outside[5:15, 4:18, 3:12] = False
    np.testing.assert_array_equal(out[:, outside], probabilities[:, outside])
    assert not np.allclose(out[:, ~outside], probabilities[:, ~outside])
    # The box alone gives the same as cropping by hand.
    box = (slice(None), slice(5, 15), slice(4, 18), slice(3, 12))
    np.testing.assert_allclose(out[box], dense_crf(probabilities[box], images[box], (1, 1, 1), parameters),
                               atol=1e-6)
    # Left out of the lattice: voxels of the box outside the mask keep their input.
    excluded = dense_crf(probabilities, images, (1, 1, 1), parameters, mask=mask, exclude_outside_mask=True)
    np.testing.assert_array_equal(excluded[:, ~mask], probabilities[:, ~mask])
    assert np.mean(excluded[:, mask].argmax(axis=0) == out[:, mask].argmax(axis=0)) > 0.9
    # An empty mask leaves everything as it is.
    np.testing.assert_array_equal(dense_crf(probabilities, images, (1, 1, 1), mask=np.zeros_like(mask)),
                                  probabilities)


def test_crf_improves_dice():
    probabilities, images, truth = synthetic_case((48, 44, 36), 3, 2, seed=3, noise=1.4)
    refined = dense_crf(probabilities, images, (1, 1, 1), CRFParameters(intensity_sigma=12.0))

    def dice(segmentation: np.ndarray) -> float:
        return 2 * np.sum((segmentation == 1) & (truth == 1)) / (np.sum(segmentation == 1) + np.sum(truth == 1))

    before, after = dice(probabilities.argmax(axis=0)), dice(refined.argmax(axis=0))
    assert after > before + 0.2, f"Dice {before:.3f} -> {after:.3f}"


def test_zero_weights_and_iterations(small_case):
    probabilities, images, _ = small_case
    unchanged = dense_crf(probabilities, images, (1, 1, 1), CRFParameters(iterations=0))
    np.testing.assert_allclose(unchanged, probabilities, atol=1e-6)
    no_kernels = dense_crf(probabilities, images, (1, 1, 1),
                           CRFParameters(smoothness_weight=0.0, appearance_weight=0.0))
    np.testing.assert_allclose(no_kernels, probabilities, atol=1e-6)


# -- the compiled lattice, the device path, kernel reuse, tuning ---------------------------------------------------


def test_sparse_filter_matches_the_compiled_one():
    """The filter other devices (CUDA) run, torch CSR products and gathers, checked here on the CPU."""
    from lesionseg.crf.lattice import _SparseFilter

    rng = np.random.default_rng(4)
    features = torch.from_numpy((rng.random((400, 5)) * 6).astype(np.float32))
    features[:100] = features[100:200] + 0.05  # shared vertices and isolated simplices both
    lattice = PermutohedralLattice(features)
    assert 0 < lattice.n_isolated < 400 and lattice.n_vertices > 0
    values = torch.from_numpy(rng.random((400, 3)).astype(np.float32))
    on_device = torch.empty_like(values)
    _SparseFilter(lattice, torch.device("cpu"))(values, on_device)
    np.testing.assert_allclose(on_device.numpy(), lattice.filter(values).numpy(), rtol=1e-5, atol=1e-6)


def test_lattice_uses_torch_threads():
    import numba

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        PermutohedralLattice(torch.rand(50, 3))
        assert numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_compiled_code_without_a_cache_directory(tmp_path):
    """numba must still work where it finds no writable cache directory (it compiles in each process then)."""
    import subprocess
    import sys

    blocked = tmp_path / "a_file"
    blocked.write_text("")
    environment = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="UserProvidedCacheLocator",
                       NUMBA_CACHE_DIR=str(blocked / "cache"))
    check = "from lesionseg.crf import lattice; print(type(lattice._locate._cache).__name__)"
    result = subprocess.run([sys.executable, "-c", check], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "NullCache"


def test_mean_field_crf_reuses_its_kernels_for_other_weights(small_case):
    probabilities, images, _ = small_case
    mask = np.zeros(probabilities.shape[1:], dtype=bool)
    mask[2:20, 3:19, 2:18] = True
    first = CRFParameters(intensity_sigma=10.0)
    second = CRFParameters(intensity_sigma=10.0, smoothness_weight=1.0, appearance_weight=8.0, iterations=3)
    crf = MeanFieldCRF(probabilities, images, (1, 1, 1), first, mask=mask)
    np.testing.assert_allclose(crf.marginals(first), dense_crf(probabilities, images, (1, 1, 1), first, mask=mask),
                               atol=1e-6)
    kernels = dict(crf.kernels)
    np.testing.assert_allclose(crf.marginals(second),
                               dense_crf(probabilities, images, (1, 1, 1), second, mask=mask), atol=1e-6)
    assert crf.kernels == kernels and 0 < crf.lattice_seconds <= crf.build_seconds
    with pytest.raises(ValueError, match="sigmas"):
        crf.marginals(CRFParameters(intensity_sigma=5.0))


def test_mean_field_crf_builds_only_weighted_kernels(small_case):
    probabilities, images, _ = small_case
    crf = MeanFieldCRF(probabilities, images, (1, 1, 1), CRFParameters())
    crf.marginals(CRFParameters(smoothness_weight=0.0))
    assert set(crf.kernels) == {"appearance"}
    crf.marginals(CRFParameters())
    assert set(crf.kernels) == {"appearance", "smoothness"}


def test_search_trials_share_sigmas_in_groups_and_are_reproducible():
    base = CRFParameters()
    groups = tuning.search_trials(np.random.default_rng(3), base, trials=10, n_modalities=4, weights_per_sigma_draw=4)
    assert [len(g) for g in groups] == [1, 4, 4, 1] and groups[0] == [base]
    for group in groups[1:]:
        sigmas = {(p.smoothness_sigma_mm, p.appearance_sigma_mm, p.intensity_sigma) for p in group}
        assert len(sigmas) == 1, "a group shares its sigmas (one set of lattices)"
        assert len({(p.smoothness_weight, p.appearance_weight) for p in group}) == len(group)
        for p in group:
            low, high = tuning.SEARCH_RANGES["appearance_weight"]
            assert low <= p.appearance_weight <= high and len(p.intensity_sigma) == 4
    assert groups == tuning.search_trials(np.random.default_rng(3), base, 10, 4, 4)
    assert tuning.search_trials(np.random.default_rng(3), base, 0, 4) == []
    # One weight draw per sigma draw: every trial a full draw, the sequence Kamnitsas et al.'s search draws.
    rng = np.random.default_rng(3)
    full = [[tuning.sample_parameters(rng, base, 4)] for _ in range(9)]
    assert tuning.search_trials(np.random.default_rng(3), base, 10, 4) == [[base], *full]
    # More weight draws add trials on the same kernels after each full draw.
    assert groups[1][0] == full[0][0]


def test_tuning_builds_the_kernels_once_per_sigma_draw_and_subject(monkeypatch, small_case):
    probabilities, images, truth = small_case
    scheme = LABEL_SCHEMES["brats2013"]
    labels = np.array([0, 1, 2], dtype=np.uint8)[truth]
    prepared = []

    class CountingCRF(MeanFieldCRF):
        def __init__(self, *args, **kwargs):
            prepared.append(kwargs.get("device"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tuning, "MeanFieldCRF", CountingCRF)
    three_classes = np.concatenate([probabilities, np.zeros((scheme.n_classes - 3,) + probabilities.shape[1:],
                                                            np.float32)])
    cases = [tuning.ValidationCase(name, three_classes, images, labels, np.ones(truth.shape, bool), (1.0, 1.0, 1.0))
             for name in ("s1", "s2")]
    best, rows = tuning.tune_crf(cases, scheme, CRFParameters(intensity_sigma=10.0, iterations=2), trials=6, seed=1,
                                 device="cpu", weights_per_sigma_draw=3)
    assert len(prepared) == 2 * 3 and set(prepared) == {"cpu"}  # groups [base], [3 draws], [2 draws]; two subjects
    assert [row["trial"] for row in rows] == ["network", 0, 1, 2, 3, 4, 5]
    assert set(rows[1]) == {"trial", "mean_dice", *CRFParameters().to_mapping()}
    assert max(rows[1:], key=lambda row: row["mean_dice"])["mean_dice"] == pytest.approx(
        next(row["mean_dice"] for row in rows[1:] if CRFParameters.from_mapping(
            {k: v for k, v in row.items() if k not in ("trial", "mean_dice")}) == best))
