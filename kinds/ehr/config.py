"""cohort.yaml fields of an `ehr` modality."""

from __future__ import annotations

from typing import ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clinfuse.platform.kinds import KindConfig
from pydantic import Field, field_validator, model_validator

EventKind = Literal["diagnosis", "procedure", "drug", "lab", "vital"]
# the MIMIC table each event kind came from before `events` replaced `tables`, for the error that names the fix
_LEGACY_TABLES = {"diagnoses_icd": "diagnosis", "procedures_icd": "procedure", "prescriptions": "drug",
                  "labevents": "lab"}  # fmt: skip


class EhrModality(KindConfig):
    """Coded events and lab values from one EHR export. `source` names its layout: `mimic4` / `mimic3` (the
    MIMIC CSV folders), `omop` (OMOP CDM 5.3/5.4 CSV tables, with `concept.csv` when the export has it), `meds`
    (MEDS parquet shards under data/ with metadata/) or `fhir` (an R4 bulk-export folder of NDJSON files) or
    `events` (ClinFuse's own event table, `events.parquet`: the layout of online scoring requests).

    Every source becomes the same event stream (patient, time, kind, code system, code, value, unit), so the
    features do not depend on where the events came from.
    """

    kind: Literal["ehr"]
    source: Literal["mimic4", "mimic3", "omop", "meds", "fhir", "events"] = "mimic4"
    events: tuple[EventKind, ...] = Field(
        ("diagnosis", "procedure", "drug", "lab"), description="event kinds read from the source"
    )
    timezone: str = Field(
        "UTC",
        description="IANA zone of the cohort's index times and of the export's times that carry no offset; times "
        "with an offset (FHIR) are converted to it",
    )
    code_systems: dict[str, str] = Field(
        default_factory=dict,
        description="this site's own code-system URIs or vocabulary ids mapped to a system name, e.g. "
        "{'http://hospital.example/labs': 'LOCAL-LAB'}",
    )
    icd9_to_icd10: bool = Field(
        False, description="map ICD-9-CM diagnoses to ICD-10-CM through the CMS General Equivalence Mappings"
    )
    max_codes: int = Field(256, ge=8, le=4096, description="most recent codes kept per patient")
    min_code_count: int = Field(2, ge=1, description="codes rarer than this in training map to <unk>")

    # How this site exports its EHR; the vocabulary, GEM mapping and limits come from the model when scoring.
    site_fields: ClassVar[tuple[str, ...]] = ("source", "timezone", "code_systems")

    @model_validator(mode="before")
    @classmethod
    def _tables_renamed(cls, data: object) -> object:
        if isinstance(data, dict) and "tables" in data:
            tables = data["tables"] if isinstance(data["tables"], list | tuple) else [data["tables"]]
            kinds = [_LEGACY_TABLES.get(str(t), str(t)) for t in tables]
            raise ValueError(f"'tables' was replaced by 'events' (event kinds, whatever the source): write events: "
                             f"[{', '.join(kinds)}]")  # fmt: skip
        return data

    @field_validator("events")
    @classmethod
    def _some_events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("events must name at least one of diagnosis, procedure, drug, lab, vital")
        return tuple(dict.fromkeys(value))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {value!r} is not an IANA zone name: write e.g. UTC or Europe/Berlin") from None
        return value
