"""Write the synthetic population's average head and brain mask (rule synthetic_head_template)."""

import numpy as np

from lesionseg.io import write_nifti
from lesionseg.logs import log_to_file
from lesionseg.synthetic import head_template

log_to_file(snakemake.log[0])
template = head_template(snakemake.params.modality, snakemake.params.spacing_mm)
write_nifti(snakemake.output.head, template.image, template.affine, np.float32)
write_nifti(snakemake.output.mask, template.brain_mask, template.affine, np.uint8)
