"""The notes config: strict fields with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from clinfuse.kinds.notes.config import NotesModality
from pydantic import ValidationError


def make(**fields) -> NotesModality:
    return NotesModality(name="notes", path=Path("notes.csv"), kind="notes", **fields)


def test_defaults() -> None:
    config = make()
    assert (config.format, config.time, config.max_tokens, config.vocabulary_size) == ("table", "charttime", 512, 8000)
    assert config.extra_paths() == {}


@pytest.mark.parametrize(("fields", "message"), [
    ({"max_token": 100}, "Extra inputs are not permitted"),
    ({"max_tokens": 8}, "greater than or equal to 16"),
    ({"vocabulary_size": 10}, "greater than or equal to 100"),
    ({"format": "csv"}, "'table' or 'mimic4_note'"),
    ({"note_types": []}, "at least one non-empty note type"),
    ({"note_types": ["DS", " "]}, "at least one non-empty note type"),
    ({"format": "mimic4_note", "text": "body"}, "format: mimic4_note reads MIMIC-IV-Note's own columns"),
    ({"time": "text"}, "must name different columns"),
    ({"patient_id": ""}, "must not be empty"),
])  # fmt: skip
def test_invalid_fields_name_the_problem(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make(**fields)


def test_kind_literal() -> None:
    with pytest.raises(ValidationError, match="'notes'"):
        NotesModality(name="notes", path=Path("x"), kind="ehr")
