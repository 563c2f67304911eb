"""Draw a training subject's sample centres for every sampling strategy its models use (rule sample_subject)."""

from lesionseg.labels import scheme_from_config
from lesionseg.logs import log_to_file
from lesionseg.sampling import describe, sample_subject, write_samples

log_to_file(snakemake.log[0])
scheme = scheme_from_config(snakemake.params.scheme, name=snakemake.params.scheme["name"])
subject = snakemake.wildcards.subject
sets = sample_subject(snakemake.input.label, snakemake.input.mask, scheme, snakemake.params.plan,
                      snakemake.params.seed, subject)
write_samples(snakemake.output.samples, sets, {
    "subject": subject, "seed": snakemake.params.seed, "plan": snakemake.params.plan,
    "sets": {name: describe(s, scheme.class_names) for name, s in sets.items()},
})
