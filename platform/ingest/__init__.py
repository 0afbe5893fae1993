"""Ingestion: cohort config and hospital exports in, a validated, de-identified feature cache out."""

from clinfuse.platform.ingest.runner import IngestResult, ingest

__all__ = ["IngestResult", "ingest"]
