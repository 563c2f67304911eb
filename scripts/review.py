"""The page of a dataset's segmentations to review first (rule review)."""

from lesionseg.logs import log_to_file
from lesionseg.reporting.review import write_review_page

log_to_file(snakemake.log[0])
write_review_page(snakemake.wildcards.dataset, dict(zip(snakemake.params.methods, snakemake.input.tables, strict=True)),
                  snakemake.params.overlays, snakemake.output.html)
