"""Memory requests of the network and CRF jobs follow what they hold (SLURM kills a job that exceeds its request)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from lesionseg import resources

BRATS_SHAPE = (240, 240, 155)
BRATS_VOXELS_MB = 4 * np.prod(BRATS_SHAPE) / 2**20  # one float32 channel of a 1 mm BraTS volume


def test_float32_size_comes_from_the_header_not_the_compressed_file(tmp_path):
    path = tmp_path / "image.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((40, 30, 20, 4), dtype=np.uint8), np.eye(4)), path)  # compresses to ~nothing
    assert resources.float32_mb(path) == pytest.approx(4 * 40 * 30 * 20 * 4 / 2**20)
    assert resources.float32_mb(tmp_path / "not-made-yet.nii.gz") == 0.0  # a dry run


def test_inference_asks_for_its_memory_budget_and_its_image():
    image_mb = 4 * BRATS_VOXELS_MB
    default = resources.inference_mem_mb(image_mb, n_channels=4, n_classes=5, n_networks=1, memory_budget_mb=2048)
    assert 3000 < default < 6000
    # A raised budget is asked for in full, so the job is not killed for using it.
    raised = resources.inference_mem_mb(image_mb, n_channels=4, n_classes=5, n_networks=1, memory_budget_mb=16000)
    assert raised - default == 16000 - 2048
    # Several networks (k fold models) keep a float64 sum beside; a larger image holds more.
    assert resources.inference_mem_mb(image_mb, 4, 5, 5, 2048) > default
    assert resources.inference_mem_mb(2 * image_mb, 4, 5, 1, 2048) > default


def test_crf_tuning_asks_for_one_crf_however_many_subjects_it_holds():
    subject_mb = (5 + 4 + 1 + 1) * BRATS_VOXELS_MB  # probabilities, image, mask and truth of a BraTS subject
    one = resources.crf_mem_mb([subject_mb])
    fifty = resources.crf_mem_mb([subject_mb] * 50)
    # Fifty subjects add their arrays, not fifty CRFs' working memory.
    assert fifty - one == pytest.approx(49 * subject_mb, abs=1)
    assert fifty < 40_000  # about 25 GB, where 3000 + 60 MB per compressed MB of all the inputs asked ~150 GB
    # The CRF's working memory is that of the largest subject.
    assert resources.crf_mem_mb([subject_mb, subject_mb / 8]) > resources.crf_mem_mb([subject_mb / 8] * 2)
    crf_job = resources.crf_mem_mb([(5 + 4) * BRATS_VOXELS_MB])
    assert 3350 + 650 < crf_job < 10_000  # above bench/crf.py's measured 4.0 GB peak for such a subject
