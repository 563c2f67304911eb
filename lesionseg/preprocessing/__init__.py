"""Preprocessing of a subject's scans: co-registration, skull-stripping, N4 bias
correction, resampling and cropping, intensity normalisation (ANTsPy), each a step
of its own so that the workflow re-runs only what a change affects.
"""
