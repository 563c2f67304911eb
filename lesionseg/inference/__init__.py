"""Dense inference: whole-volume class probabilities from a fully convolutional model."""
