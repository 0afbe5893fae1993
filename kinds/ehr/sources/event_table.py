"""ClinFuse's own event table (`source: events`): `events.parquet` with the columns of EVENT_SCHEMA.

The layout an online scoring request's EHR events are written in (kinds/ehr/request.py), and the simplest export a
site can produce itself. `system` is a ClinFuse system name (`ICD10CM`, `LOINC`, ... as in kinds/ehr/codes.py), a
FHIR system URI, or a name the site maps with `code_systems`; times are naive, in the modality's `timezone`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import polars as pl
from clinfuse.kinds.ehr import codes
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.sources.base import EVENT_SCHEMA, EventSource, SourceEvents, conform

EVENTS_FILE = "events.parquet"


class EventTableSource(EventSource):
    name: ClassVar[str] = "events"
    required: ClassVar[tuple[str, ...]] = (EVENTS_FILE,)
    layout_hint: ClassVar[str] = f"a folder holding {EVENTS_FILE} (columns {', '.join(EVENT_SCHEMA)})"
    event_kinds: ClassVar[tuple[str, ...]] = ("diagnosis", "procedure", "drug", "lab", "vital")

    def read(self, modality: EhrModality, scratch: Path, progress: bool) -> SourceEvents:
        frame = pl.scan_parquet(modality.path / EVENTS_FILE)
        given = pl.col("system").cast(pl.String).str.strip_chars()
        system = given.replace({**codes.FHIR_SYSTEMS, **modality.code_systems})
        frame = frame.with_columns(
            system=system,
            raw_system=pl.when(given.is_null()).then(pl.lit("(no system)")),
            code=codes.normalised_code_expr(system, pl.col("code")),
        )
        return SourceEvents(events=conform(frame))
