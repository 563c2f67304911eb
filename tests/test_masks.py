"""Mask helpers shared by inference, CRF and evaluation."""

import numpy as np

from lesionseg.masks import bounding_box


def test_bounding_box_with_margin_is_clipped_to_the_grid_and_none_when_empty():
    mask = np.zeros((10, 8, 6), dtype=bool)
    mask[2:5, 0:3, 4] = True
    assert bounding_box(mask) == (slice(2, 5), slice(0, 3), slice(4, 5))
    assert bounding_box(mask, margin=2) == (slice(0, 7), slice(0, 5), slice(2, 6))
    assert bounding_box(mask[:, :, 4]) == (slice(2, 5), slice(0, 3))  # 2D
    assert bounding_box(np.zeros((3, 3), dtype=bool)) is None
