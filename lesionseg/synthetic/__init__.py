"""Synthetic multi-modal head MRI with known lesion truth (tumour or stroke).

Heads are built from the MNI152 2009c template shipped with nilearn (no
download), deformed per subject, given a skull and scalp, a lesion, realistic
relative contrasts, a bias field and Rician noise. Everything is deterministic
per ``(seed, index)``.
"""

from lesionseg.synthetic.qc import save_qc_png
from lesionseg.synthetic.subject import (
    KINDS,
    MODALITIES,
    HeadTemplate,
    SyntheticSubject,
    head_template,
    synthesize_subject,
)

__all__ = ["KINDS", "MODALITIES", "HeadTemplate", "SyntheticSubject", "head_template", "save_qc_png",
           "synthesize_subject"]
