"""Reproducible benchmarks: the read API, ingestion and the job pipeline against baselines."""
