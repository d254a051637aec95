"""Human ratings: survey definitions, MTurk import with quality control, aggregation,
inter-rater reliability, and survey generation.

- :mod:`~semcomp.surveys.definitions` — Surveys A, B, C (built-in TOML) and custom ones;
- :mod:`~semcomp.surveys.mturk` — batch-results CSVs in both answer layouts;
- :mod:`~semcomp.surveys.mapping` — which columns name the images and the answers;
- :mod:`~semcomp.surveys.importer` — import, quality control, ``human.*`` scores;
- :mod:`~semcomp.surveys.aggregate` — the read API (DataFrames; never writes);
- :mod:`~semcomp.surveys.make` — HIT input CSV, HTML template, images to upload.
"""
