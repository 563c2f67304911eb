"""Where training patches are centred: sampling strategies, per-subject centres, sample files."""

from lesionseg.sampling.centres import (
    SampleSet,
    describe,
    sample_centres,
    sample_subject,
    samples_per_class,
    subject_rng,
)
from lesionseg.sampling.files import SAMPLE_FILE_FORMAT, read_samples, write_samples
from lesionseg.sampling.strategies import (
    SAMPLING_STRATEGIES,
    Strategy,
    class_probabilities,
    resolve_strategy,
)

__all__ = [
    "SAMPLE_FILE_FORMAT",
    "SAMPLING_STRATEGIES",
    "SampleSet",
    "Strategy",
    "class_probabilities",
    "describe",
    "read_samples",
    "resolve_strategy",
    "sample_centres",
    "sample_subject",
    "samples_per_class",
    "subject_rng",
    "write_samples",
]
