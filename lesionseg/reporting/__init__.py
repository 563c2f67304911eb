"""Reports of the evaluation: summary tables (CSV and Markdown), CRF significance tests and figures."""

from lesionseg.reporting.tables import (
    CRF_SUFFIX,
    SUMMARY_METRICS,
    crf_pairs,
    crf_significance,
    format_p_value,
    formatted_summary,
    load_per_subject,
    markdown_table,
    scored_rows,
    summary_table,
    volume_table,
    write_summary,
)

__all__ = [
    "CRF_SUFFIX",
    "SUMMARY_METRICS",
    "crf_pairs",
    "crf_significance",
    "format_p_value",
    "formatted_summary",
    "load_per_subject",
    "markdown_table",
    "scored_rows",
    "summary_table",
    "volume_table",
    "write_summary",
]
