"""Training: segment extraction, augmentation, optimisers and the two-phase training loop."""
