"""Batch scoring of patient cohorts: frozen ingest, chunked and resumable, on Dask."""
