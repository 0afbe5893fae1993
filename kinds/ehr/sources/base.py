"""The event stream every EHR source is read into, and the base class of the source readers.

A reader turns one export layout into a lazy frame of `EVENT_SCHEMA` rows, plus counts of what it had to leave
out while reading (malformed lines, resources without a subject, ...). Everything after the reader (keeping
cohort patients, the index-time cut, features, timeline, explanations) is shared, so no later stage knows which
source fed it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import polars as pl
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.platform.errors import ClinFuseError

# time: naive, in the modality's `timezone`; null when the source had none (counted, then dropped).
# system: a name of kinds/ehr/codes.py (or of the site's `code_systems`); null when unknown, with the source's
# own name for it in raw_system (counted per raw_system, then dropped).
# value/unit: numeric result and its unit, for lab and vital events; text: the source's display name, if any.
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "patient_id": pl.String(),
    "time": pl.Datetime("us"),
    "kind": pl.String(),
    "system": pl.String(),
    "raw_system": pl.String(),
    "code": pl.String(),
    "value": pl.Float64(),
    "unit": pl.String(),
    "text": pl.String(),
}


@dataclass
class SourceEvents:
    """A source's events (lazy, `EVENT_SCHEMA` columns) and counts of what its reader left out, per reason."""

    events: pl.LazyFrame
    problems: dict[str, int] = field(default_factory=dict)


class EventSource(ABC):
    """Reads one EHR export layout. Subclasses name the layout (`name`, the `source:` value in cohort.yaml) and
    the files that must exist under the modality's path; `read` may write working files under `scratch`."""

    name: ClassVar[str]
    required: ClassVar[tuple[str, ...]] = ()
    layout_hint: ClassVar[str] = ""
    event_kinds: ClassVar[tuple[str, ...]] = ("diagnosis", "procedure", "drug", "lab")

    def required_files(self, modality: EhrModality) -> tuple[str, ...]:
        """Files (relative to the modality's path; a .gz twin counts) the configured events need."""
        return self.required

    def check_layout(self, modality: EhrModality) -> None:
        unsupported = [k for k in modality.events if k not in self.event_kinds]
        if unsupported:
            raise ClinFuseError(
                f"ehr modality '{modality.name}': source {self.name} has no {', '.join(unsupported)} events",
                f"remove them from events (this source reads {', '.join(self.event_kinds)})",
            )
        missing = [f for f in self.required_files(modality) if not _exists(modality.path, f)]
        if missing:
            raise ClinFuseError(
                f"ehr modality '{modality.name}': {self.name} file(s) {missing} not found under {modality.path}",
                f"point path at {self.layout_hint} or set source to the export's layout "
                f"(mimic4, mimic3, omop, meds, fhir, events)",
            )

    @abstractmethod
    def read(self, modality: EhrModality, scratch: Path, progress: bool) -> SourceEvents:
        """The export's events as `EVENT_SCHEMA` rows (any patients, any times: the caller cuts)."""


def _exists(root: Path, name: str) -> bool:
    """`name` exists under `root`, as given or gzipped (exports ship both)."""
    return (root / name).exists() or (root / f"{name}.gz").exists()


def conform(frame: pl.LazyFrame) -> pl.LazyFrame:
    """`frame` with exactly the `EVENT_SCHEMA` columns, in order and type (missing ones null)."""
    names = set(frame.collect_schema().names())
    return frame.select([(pl.col(c) if c in names else pl.lit(None)).cast(t).alias(c) for c, t in EVENT_SCHEMA.items()])
