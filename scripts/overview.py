"""The run's overview, configuration and preprocessing QC pages (rule overview)."""

from lesionseg.logs import log_to_file
from lesionseg.reporting.gallery import Embedding
from lesionseg.reporting.overview import crf_uses_of, datasets_of, write_overview
from lesionseg.reporting.qc import QCPictures, write_qc_page

log_to_file(snakemake.log[0])
params, inputs, output = snakemake.params, snakemake.input, snakemake.output
write_overview(datasets_of(params.datasets, inputs.manifests), crf_uses_of(params.crf), list(inputs.run_times),
               params.config, output.overview, output.configuration)
# The QC pictures and grids come in the order of params.qc_subjects: dataset by dataset, subjects in manifest order.
pictures, grids, qc = list(inputs.qc), list(inputs.grids), []
for dataset, subjects in params.qc_subjects.items():
    n = len(subjects)
    qc.append(QCPictures(dataset, subjects, pictures[:n], grids[:n]))
    pictures, grids = pictures[n:], grids[n:]
write_qc_page(qc, output.qc, Embedding.from_config(params.config["report"]))
