"""Fully connected (dense) CRF post-processing of soft segmentations, 2D or 3D (DeepMedic's CRF).

:func:`dense_crf` runs mean-field inference with a smoothness and an
appearance (bilateral, multi-modal) Gaussian kernel, filtered on a
permutohedral lattice (:class:`~lesionseg.crf.lattice.PermutohedralLattice`,
compiled with numba); :class:`MeanFieldCRF` keeps one subject's kernels for
inference with several weights (a parameter search); :class:`CRFParameters`
holds the weights and sigmas (DeepMedic's defaults).
"""

from lesionseg.crf.lattice import PermutohedralLattice
from lesionseg.crf.meanfield import CRFParameters, MeanFieldCRF, dense_crf

__all__ = ["CRFParameters", "MeanFieldCRF", "PermutohedralLattice", "dense_crf"]
