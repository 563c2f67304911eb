"""Evaluation of segmentations against the truth."""
