"""Fully connected (dense) CRF post-processing of soft segmentations, 2D or 3D (DeepMedic's CRF), in torch.

:func:`dense_crf` runs mean-field inference with a smoothness and an
appearance (bilateral, multi-modal) Gaussian kernel, filtered on a
permutohedral lattice (:class:`~lesionseg.crf.lattice.PermutohedralLattice`);
:class:`CRFParameters` holds the weights and sigmas (DeepMedic's defaults).
"""

from lesionseg.crf.lattice import PermutohedralLattice
from lesionseg.crf.meanfield import CRFParameters, dense_crf

__all__ = ["CRFParameters", "PermutohedralLattice", "dense_crf"]
