"""Reports of the evaluation: summary tables (CSV, Markdown, HTML), CRF significance tests, figures, pages."""
