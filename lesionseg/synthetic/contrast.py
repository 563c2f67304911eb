"""MR contrasts: tissue fractions -> images with bias field and Rician noise.

Each voxel's signal is the fraction-weighted sum of its tissues' mean
intensities (partial volume), with a smooth within-tissue texture. Means are
relative to white matter on T1 and mimic clinical scans; each subject varies them
by a few percent. The acquisition then multiplies a smooth bias field, scales by
an arbitrary scanner gain and adds Rician noise, so air holds noise only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lesionseg.synthetic.fields import smooth_random_field

# Mean intensity of each tissue per modality (arbitrary units, WM on T1 = 1).
# T1: WM > GM > CSF, fat bright. T1ce: T1 plus enhancing tumour very bright.
# T2: CSF, necrosis and edema bright, GM > WM. FLAIR: CSF suppressed, GM > WM,
# edema and lesions bright. DWI (b=1000): brain nearly uniform, CSF dark, fat
# suppressed (EPI), acute infarct very bright (restricted diffusion).
MEAN_INTENSITY: dict[str, dict[str, float]] = {
    "t1": {
        "gm": 0.62, "wm": 1.00, "csf": 0.22, "skull": 0.06, "scalp": 1.35,
        "necrosis": 0.30, "edema": 0.60, "nonenhancing": 0.52, "enhancing": 0.58, "infarct": 0.50,
    },
    "t1ce": {
        "gm": 0.62, "wm": 1.00, "csf": 0.22, "skull": 0.06, "scalp": 1.35,
        "necrosis": 0.30, "edema": 0.62, "nonenhancing": 0.58, "enhancing": 1.65,
    },
    "t2": {
        "gm": 0.72, "wm": 0.50, "csf": 1.60, "skull": 0.05, "scalp": 0.95,
        "necrosis": 1.45, "edema": 1.15, "nonenhancing": 0.95, "enhancing": 0.90, "infarct": 1.05,
    },
    "flair": {
        "gm": 0.80, "wm": 0.58, "csf": 0.12, "skull": 0.05, "scalp": 0.85,
        "necrosis": 0.65, "edema": 1.25, "nonenhancing": 1.05, "enhancing": 1.00, "infarct": 1.15,
    },
    "dwi": {"gm": 0.62, "wm": 0.56, "csf": 0.15, "skull": 0.03, "scalp": 0.12, "infarct": 1.60},
}
# Relative amplitude of the within-tissue texture; tumours are heterogeneous.
TEXTURE_AMPLITUDE = {
    "gm": 0.05, "wm": 0.03, "csf": 0.02, "skull": 0.15, "scalp": 0.08,
    "necrosis": 0.12, "edema": 0.08, "nonenhancing": 0.12, "enhancing": 0.12, "infarct": 0.08,
}
# Per-subject relative spread of each tissue's mean (standard deviation).
MEAN_SPREAD = 0.04
TEXTURE_LENGTH_MM = 2.5
BIAS_LENGTH_MM = 90.0
# Standard deviation of the log bias field: two of them is about +-20%.
BIAS_LOG_STD_RANGE = (0.07, 0.11)
# Share of the log bias field common to all modalities (same coil, same head).
BIAS_SHARED_VARIANCE = 0.85
# Rician noise standard deviation as a fraction of the WM intensity.
NOISE_FRACTION_OF_WM = {"t1": (0.015, 0.035), "t1ce": (0.015, 0.035), "t2": (0.015, 0.035),
                        "flair": (0.02, 0.04), "dwi": (0.03, 0.05)}
GAIN_RANGE = (100.0, 1000.0)


def _tissue_signal(
    fractions: Mapping[str, np.ndarray], means: Mapping[str, float], texture: np.ndarray
) -> np.ndarray:
    """Partial-volume signal: sum over tissues of fraction * mean * (1 + amplitude * texture), float32."""
    flat = np.zeros(texture.shape, dtype=np.float32)
    textured = np.zeros(texture.shape, dtype=np.float32)
    for tissue, fraction in fractions.items():
        weighted = fraction * np.float32(means[tissue])
        flat += weighted
        textured += weighted * np.float32(TEXTURE_AMPLITUDE[tissue])
    return flat + textured * texture


def rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of ``signal`` plus complex Gaussian noise of std ``sigma`` per channel, float32."""
    real = signal + rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    imaginary = rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt(real * real + imaginary * imaginary)


def render_images(
    rng: np.random.Generator, fractions: Mapping[str, np.ndarray], modalities: tuple[str, ...], spacing_mm: float
) -> dict[str, np.ndarray]:
    """One image per modality from tissue fractions: float32 (x, y, z), >= 0.

    The texture and most of the bias field are shared between modalities, as
    they would be for one head in one coil.
    """
    shape = next(iter(fractions.values())).shape
    texture = smooth_random_field(rng, shape, spacing_mm, TEXTURE_LENGTH_MM)
    bias_amplitude = rng.uniform(*BIAS_LOG_STD_RANGE)
    shared_bias = smooth_random_field(rng, shape, spacing_mm, BIAS_LENGTH_MM)
    images = {}
    for modality in modalities:
        means = {t: m * (1.0 + MEAN_SPREAD * rng.standard_normal()) for t, m in MEAN_INTENSITY[modality].items()}
        own_bias = smooth_random_field(rng, shape, spacing_mm, BIAS_LENGTH_MM)
        log_bias = np.float32(bias_amplitude * np.sqrt(BIAS_SHARED_VARIANCE)) * shared_bias
        log_bias += np.float32(bias_amplitude * np.sqrt(1.0 - BIAS_SHARED_VARIANCE)) * own_bias
        gain = float(np.exp(rng.uniform(*np.log(GAIN_RANGE))))
        signal = _tissue_signal(fractions, means, texture) * np.exp(log_bias)
        signal *= np.float32(gain)
        sigma = rng.uniform(*NOISE_FRACTION_OF_WM[modality]) * means["wm"] * gain
        images[modality] = rician(rng, signal, sigma)
    return images


def render_noise_free(fractions: Mapping[str, np.ndarray], modality: str) -> np.ndarray:
    """The mean-contrast image of ``modality`` (no texture, bias field or noise), float32 (x, y, z)."""
    shape = next(iter(fractions.values())).shape
    return _tissue_signal(fractions, MEAN_INTENSITY[modality], np.zeros(shape, dtype=np.float32))
