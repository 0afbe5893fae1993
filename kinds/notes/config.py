"""`kind: notes` in cohort.yaml: free-text clinical notes, from one table or the MIMIC-IV-Note folder layout."""

from __future__ import annotations

from typing import ClassVar, Literal

from clinfuse.platform.kinds.config import KindConfig
from pydantic import Field, field_validator, model_validator

TABLE_COLUMNS = ("patient_id", "time", "storetime", "note_type", "text")


class NotesModality(KindConfig):
    """Notes per patient. `table`: one CSV/TSV/Parquet file, columns named below. `mimic4_note`: the folder that
    holds note/discharge.csv(.gz) and/or note/radiology.csv(.gz) as MIMIC-IV-Note ships them (its own columns).

    Only notes written and stored strictly before the index time count; the newest `max_notes` per patient are
    concatenated newest first, each after a marker token of its note type, and cut at `max_tokens` tokens.
    """

    kind: Literal["notes"]
    format: Literal["table", "mimic4_note"] = "table"
    patient_id: str = "patient_id"
    time: str = "charttime"
    storetime: str | None = Field(None, description="table: column of the time the note was stored, if any")
    note_type: str | None = Field("note_type", description="table: column of the note type; None: one type")
    text: str = "text"
    note_types: tuple[str, ...] | None = Field(None, description="keep only these note types (e.g. [DS, RR])")
    max_tokens: int = Field(512, ge=16, le=4096, description="tokens kept per patient (newest notes first)")
    vocabulary_size: int = Field(8000, ge=100, le=100_000, description="most frequent training words kept")
    min_token_count: int = Field(3, ge=1, description="words rarer than this in training map to [UNK]")
    max_notes: int = Field(8, ge=1, le=1000, description="most recent notes kept per patient")

    path_is_file: ClassVar[bool] = False  # a folder for mimic4_note; the ingest checks a table is a file
    # How this site exports its notes; the model's vocabulary and limits come from the model when scoring.
    site_fields: ClassVar[tuple[str, ...]] = ("format", *TABLE_COLUMNS)

    @field_validator("note_types")
    @classmethod
    def _types_given(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or any(not str(v).strip() for v in value)):
            raise ValueError("note_types must list at least one non-empty note type, or be left out (all types)")
        return value

    @model_validator(mode="after")
    def _columns_for_tables_only(self) -> NotesModality:
        if self.format == "mimic4_note":
            named = sorted(set(TABLE_COLUMNS) & self.model_fields_set)
            if named:
                raise ValueError(
                    f"{', '.join(named)} name(s) columns of format: table; format: mimic4_note reads MIMIC-IV-Note's "
                    "own columns (subject_id, charttime, storetime, note_type, text): remove them"
                )
            return self
        columns = [getattr(self, c) for c in TABLE_COLUMNS if getattr(self, c) is not None]
        if any(not c.strip() for c in columns):
            raise ValueError("column names must not be empty")
        if len(set(columns)) < len(columns):
            raise ValueError(f"patient_id, time, storetime, note_type and text must name different columns: {columns}")
        return self
