"""EHR source readers, one per export layout, registered by the `source:` name cohort.yaml uses."""

from __future__ import annotations

from clinfuse.kinds.ehr.sources.base import EVENT_SCHEMA, EventSource, SourceEvents


def source_for(name: str) -> EventSource:
    """The reader of layout `name` (the config model only admits registered names)."""
    from clinfuse.kinds.ehr.sources.event_table import EventTableSource
    from clinfuse.kinds.ehr.sources.fhir import FhirSource
    from clinfuse.kinds.ehr.sources.meds import MedsSource
    from clinfuse.kinds.ehr.sources.mimic import Mimic3Source, Mimic4Source
    from clinfuse.kinds.ehr.sources.omop import OmopSource

    layouts = (Mimic4Source, Mimic3Source, OmopSource, MedsSource, FhirSource, EventTableSource)
    readers: dict[str, type[EventSource]] = {reader.name: reader for reader in layouts}
    return readers[name]()


__all__ = ["EVENT_SCHEMA", "EventSource", "SourceEvents", "source_for"]
