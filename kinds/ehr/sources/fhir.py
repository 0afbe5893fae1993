"""FHIR R4 bulk export (a folder of NDJSON files, plain or gzipped) read into the EHR event stream.

Our own reader rather than PyHealth 2.1's FHIRDataset, whose streamer drops UTC offsets and keeps the wall-clock
time (`parse_dt` does `dt.replace(tzinfo=None)`, so events written in different zones are misordered against the
index time), keeps only the first coding of a CodeableConcept, reads no Observation value or unit, and only logs
malformed lines. Here a time with an offset is converted to the modality's `timezone`, the first coding of a known
system wins, Observations keep valueQuantity, and every line or resource left out is counted per reason.

The export is streamed line by line and written to parquet under `scratch` in chunks, so memory does not grow
with its size; no patient id or free text ever reaches a counter key or a message.
"""

from __future__ import annotations

import gzip
import re
import sys
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import orjson
import polars as pl
from clinfuse.kinds.ehr import codes
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.sources.base import EVENT_SCHEMA, EventSource, SourceEvents, conform
from clinfuse.platform.errors import ClinFuseError

CHUNK_ROWS = 200_000  # events buffered before a parquet chunk is written
PATTERNS = ("*.ndjson", "*.ndjson.gz")

_KINDS = {
    "Condition": "diagnosis",
    "Procedure": "procedure",
    "MedicationRequest": "drug",
    "MedicationStatement": "drug",
    "MedicationAdministration": "drug",
    "Observation": "lab",
}
# the fields holding an event's time, most preferred first; the first one present is the event's time
_TIME_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "Condition": (("onsetDateTime",), ("onsetPeriod", "start"), ("recordedDate",)),
    "Procedure": (("performedDateTime",), ("performedPeriod", "start")),
    "MedicationRequest": (("authoredOn",),),
    "MedicationStatement": (("effectiveDateTime",), ("effectivePeriod", "start"), ("dateAsserted",)),
    "MedicationAdministration": (("effectiveDateTime",), ("effectivePeriod", "start")),
    "Observation": (("effectiveDateTime",), ("effectivePeriod", "start"), ("effectiveInstant",), ("issued",)),
}
# FHIR dateTime / instant; seconds are optional here because real exports omit them
_DATETIME = re.compile(
    r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
)
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{0,63}")  # a resourceType that can name a counter (no free text)

MALFORMED = "malformed NDJSON line"
UNREADABLE = "unreadable file"
NOT_CONFIGURED = "resources of kinds not configured"
NOT_EVENTS = "resources not read as events: "
NO_TYPE = "resource without a valid resourceType"
NO_PATIENT = "resource without a patient reference"
NO_CODE = "resource without a code"
BY_REFERENCE = "medication given by reference only (not resolved)"
NO_BUNDLE_RESOURCE = "bundle entry without a resource"
CONVERTED = "times converted from another UTC offset"
UNPARSEABLE = "unparseable time"


class FhirSource(EventSource):
    """Conditions, Procedures, Medication{Request,Statement,Administration} and Observations of a bulk export."""

    name: ClassVar[str] = "fhir"
    layout_hint: ClassVar[str] = "the folder of the FHIR bulk export's NDJSON files"

    def check_layout(self, modality: EhrModality) -> None:
        if not export_files(modality.path):
            raise ClinFuseError(
                f"ehr modality '{modality.name}': no *.ndjson or *.ndjson.gz files under {modality.path}",
                f"point path at {self.layout_hint} or set source to the export's layout "
                f"(mimic4, mimic3, omop, meds, fhir, events)",
            )

    def read(self, modality: EhrModality, scratch: Path, progress: bool) -> SourceEvents:
        scratch.mkdir(parents=True, exist_ok=True)
        reader = _Reader(modality, Path(tempfile.mkdtemp(prefix="fhir-events-", dir=scratch)))
        for path in export_files(modality.path):
            lines = reader.read_file(path)
            if progress:
                print(f"fhir: {path.relative_to(modality.path)}: {lines} lines", file=sys.stderr)
        chunks = reader.finish()
        problems = {reason: count for reason, count in reader.counts.items() if count}
        return SourceEvents(events=conform(pl.scan_parquet(chunks)), problems=problems)


def export_files(root: Path) -> list[Path]:
    """The export's NDJSON files anywhere under `root`, in path order."""
    return sorted({p for pattern in PATTERNS for p in root.rglob(pattern) if p.is_file()})


def parse_time(text: str, zone: ZoneInfo) -> tuple[datetime, bool]:
    """A FHIR dateTime or instant as a naive time in `zone`, and whether it carried a UTC offset other than the
    zone's at that instant. A partial date is the start of its period; a time without an offset is taken as
    already in `zone`. ValueError (or OverflowError at the calendar's ends) when it is not a FHIR dateTime."""
    match = _DATETIME.fullmatch(text.strip())
    if match is None:
        raise ValueError("not a FHIR dateTime")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    moment = datetime(
        int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0),
        int((fraction or "0")[:6].ljust(6, "0")),
    )  # fmt: skip
    if offset is None:
        return moment, False
    given = timedelta(0) if offset == "Z" else timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
    if offset.startswith("-"):
        given = -given
    local = moment.replace(tzinfo=timezone(given)).astimezone(zone)
    return local.replace(tzinfo=None), local.utcoffset() != given


class _Reader:
    """Reads lines into buffered event columns, writing a parquet chunk every `CHUNK_ROWS` events."""

    def __init__(self, modality: EhrModality, out: Path) -> None:
        self.modality = modality
        self.zone = ZoneInfo(modality.timezone)
        self.out = out
        self.counts: Counter[str] = Counter()
        self.columns: dict[str, list[Any]] = {c: [] for c in EVENT_SCHEMA}
        self.chunks: list[Path] = []

    def read_file(self, path: Path) -> int:
        """Read one NDJSON file; the number of lines read."""
        lines = 0
        for line in _lines(path, self.counts):
            lines += 1
            if line.strip():
                self._line(line)
        return lines

    def finish(self) -> list[Path]:
        """Write the last chunk (an empty one when the export held no events); the chunk files."""
        if self.columns["patient_id"] or not self.chunks:
            self._flush()
        return self.chunks

    def _line(self, line: bytes) -> None:
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            item = None
        if not isinstance(item, dict):
            self.counts[MALFORMED] += 1
            return
        stack = [item]
        while stack:
            resource = stack.pop()
            if resource.get("resourceType") != "Bundle":
                self._resource(resource)
                continue
            entries = [e.get("resource") if isinstance(e, dict) else None for e in _list(resource.get("entry"))]
            self.counts[NO_BUNDLE_RESOURCE] += sum(not isinstance(r, dict) for r in entries)
            stack.extend(r for r in reversed(entries) if isinstance(r, dict))

    def _resource(self, resource: dict[str, Any]) -> None:
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not _TYPE_NAME.fullmatch(rtype):
            self.counts[NO_TYPE] += 1
            return
        kind = _KINDS.get(rtype)
        if kind is None:
            self.counts[NOT_EVENTS + rtype] += 1
            return
        if kind == "lab" and _is_vital(resource):
            kind = "vital"
        if kind not in self.modality.events:
            self.counts[NOT_CONFIGURED] += 1
            return
        patient_id = _patient_id(resource)
        if patient_id is None:
            self.counts[NO_PATIENT] += 1
            return
        concept = _concept(resource, kind)
        if concept is None and kind == "drug" and _by_reference(resource):
            self.counts[BY_REFERENCE] += 1
            return
        coded = self._coded(concept)
        if coded is None:
            self.counts[NO_CODE] += 1
            return
        value, unit = _quantity(resource) if kind in ("lab", "vital") else (None, None)
        row = (patient_id, self._time(resource, rtype), kind, *coded[:3], value, unit, coded[3])
        for column, cell in zip(self.columns.values(), row, strict=True):
            column.append(cell)
        if len(self.columns["patient_id"]) >= CHUNK_ROWS:
            self._flush()

    def _coded(self, concept: dict[str, Any] | None) -> tuple[str | None, str | None, str, str | None] | None:
        """(system, raw_system, code, text) of the first coding whose system is known, else of the first coding
        (system None, raw_system its URI); None when the concept has no coded coding."""
        if concept is None:
            return None
        codings = [c for c in _list(concept.get("coding")) if isinstance(c, dict) and _text(c.get("code"))]
        if not codings:
            return None
        for coding in codings:
            system = codes.system_of(_text(coding.get("system")), self.modality.code_systems, codes.FHIR_SYSTEMS)
            if system is not None:
                return system, None, codes.normalise_code(system, coding["code"]), _display(coding, concept)
        first = codings[0]
        raw_system = _text(first.get("system")) or "(no system)"
        return None, raw_system, first["code"].strip(), _display(first, concept)

    def _time(self, resource: dict[str, Any], rtype: str) -> datetime | None:
        """The first present time field, in the modality's zone; None when absent or unparseable (counted)."""
        for path in _TIME_FIELDS[rtype]:
            raw = _get(resource, path)
            if raw is None:
                continue
            try:
                if not isinstance(raw, str):
                    raise ValueError("not a string")
                moment, converted = parse_time(raw, self.zone)
            except (ValueError, OverflowError):
                self.counts[UNPARSEABLE] += 1
                return None
            self.counts[CONVERTED] += int(converted)
            return moment
        return None

    def _flush(self) -> None:
        path = self.out / f"part-{len(self.chunks):05d}.parquet"
        pl.DataFrame(self.columns, schema=EVENT_SCHEMA).write_parquet(path)
        self.chunks.append(path)
        self.columns = {c: [] for c in EVENT_SCHEMA}


def _lines(path: Path, counts: Counter[str]) -> Iterator[bytes]:
    """The file's lines; a file that cannot be read or decompressed is counted and the rest of it skipped."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            yield from handle
    except (OSError, EOFError, zlib.error):
        counts[UNREADABLE] += 1


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    """A non-blank string, trimmed; None otherwise."""
    return (value.strip() or None) if isinstance(value, str) else None


def _get(resource: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = resource
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _display(coding: dict[str, Any], concept: dict[str, Any]) -> str | None:
    return _text(coding.get("display")) or _text(concept.get("text"))


def _is_vital(observation: dict[str, Any]) -> bool:
    """An Observation whose category says vital-signs."""
    category = observation.get("category")
    concepts = [category] if isinstance(category, dict) else _list(category)
    return any(
        isinstance(coding, dict) and coding.get("code") == "vital-signs"
        for concept in concepts
        if isinstance(concept, dict)
        for coding in _list(concept.get("coding"))
    )


def _patient_id(resource: dict[str, Any]) -> str | None:
    """The id of the patient the resource is about: `Patient/<id>` (also inside an absolute URL or followed by
    `/_history/<version>`) or `urn:uuid:<id>`."""
    for field in ("subject", "patient"):
        reference = _text(_get(resource, (field, "reference")))
        if reference is None:
            continue
        if reference.startswith("urn:uuid:"):
            return reference.removeprefix("urn:uuid:") or None
        parts = reference.split("/")
        if "Patient" in parts[:-1]:
            return parts[parts.index("Patient") + 1] or None
    return None


def _concept(resource: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The CodeableConcept naming the event: `code`, or for medications `medicationCodeableConcept` (R4) or
    `medication.concept` (R5's CodeableReference)."""
    if kind == "drug":
        concept = resource.get("medicationCodeableConcept")
        if not isinstance(concept, dict):
            concept = _get(resource, ("medication", "concept"))
    else:
        concept = resource.get("code")
    return concept if isinstance(concept, dict) else None


def _by_reference(resource: dict[str, Any]) -> bool:
    """The medication is only a reference to a Medication resource (R4 `medicationReference`, R5
    `medication.reference`)."""
    return isinstance(resource.get("medicationReference"), dict) or isinstance(
        _get(resource, ("medication", "reference")), dict
    )


def _quantity(observation: dict[str, Any]) -> tuple[float | None, str | None]:
    """valueQuantity's value and unit (its `unit`, else its UCUM `code`); (None, None) without one."""
    quantity = observation.get("valueQuantity")
    if not isinstance(quantity, dict):
        return None, None
    raw = quantity.get("value")
    value = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    return value, _text(quantity.get("unit")) or _text(quantity.get("code"))
