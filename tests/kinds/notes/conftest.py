"""Fixtures of the notes kind's tests: a small demo notes folder, its cohort, its ingested cache folder, and the
helpers below through the `kit` fixture (test modules cannot import this conftest)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from clinfuse.kinds.notes.config import NotesModality
from clinfuse.kinds.notes.ingest import ingest_notes
from clinfuse.platform.demo.notes import write_notes
from clinfuse.platform.ingest.cohort_table import Cohort
from clinfuse.platform.ingest.context import IngestContext, ModalityOutput
from clinfuse.platform.security import Pseudonymiser

DEMO_SUBJECTS = 60


@dataclass
class Subject:
    patient_id: str
    index_time: datetime
    severity: float


class FolderCache:
    """The part of FeatureCache a kind reads (array, json, table, modality_dir) over one ingested folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def modality_dir(self, name: str) -> Path:
        return self.folder

    def array(self, name: str, key: str) -> np.ndarray:
        return np.load(self.folder / f"{key}.npy", mmap_mode="r")

    def json(self, name: str, key: str) -> dict:
        return json.loads((self.folder / f"{key}.json").read_text())

    def table(self, name: str, key: str) -> pd.DataFrame:
        return pd.read_parquet(self.folder / f"{key}.parquet")


def subjects(n: int, seed: int = 0) -> list[Subject]:
    rng = np.random.default_rng(seed)
    start = datetime(2150, 1, 1)
    return [Subject(str(10_000_000 + i), start + timedelta(days=int(rng.integers(0, 2000))), float(rng.normal()))
            for i in range(n)]  # fmt: skip


def cohort_of(ids: list[str], index_times: list, splits: list[str]) -> Cohort:
    return Cohort(pd.DataFrame({"patient_id": ids, "label": [0] * len(ids), "index_time": pd.to_datetime(index_times),
                                "split": splits}))  # fmt: skip


def context(tmp: Path, alignment: dict | None = None) -> IngestContext:
    return IngestContext(pseudonymise=Pseudonymiser(b"notes-test-key-" * 3), scratch=tmp, previous=None,
                         alignment=alignment)  # fmt: skip


def notes_config(path: Path, **fields) -> NotesModality:
    return NotesModality(name="notes", path=path, kind="notes", **fields)


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    return SimpleNamespace(FolderCache=FolderCache, subjects=subjects, cohort_of=cohort_of, context=context,
                           notes_config=notes_config)  # fmt: skip


@dataclass
class DemoNotes:
    root: Path
    subjects: list[Subject]
    truth: dict
    summary: dict
    cohort: Cohort


@pytest.fixture(scope="session")
def demo_notes(tmp_path_factory: pytest.TempPathFactory) -> DemoNotes:
    root = tmp_path_factory.mktemp("notes") / "mimic-iv-note"
    people = subjects(DEMO_SUBJECTS)
    truth, summary = write_notes(people, root, np.random.default_rng(5))
    splits = ["train" if i % 5 < 3 else ("val" if i % 5 == 3 else "test") for i in range(len(people))]
    cohort = cohort_of([s.patient_id for s in people], [s.index_time for s in people], splits)
    return DemoNotes(root, people, truth, summary, cohort)


@pytest.fixture(scope="session")
def demo_ingested(demo_notes: DemoNotes, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModalityOutput]:
    out = tmp_path_factory.mktemp("notes-cache") / "notes"
    config = notes_config(demo_notes.root, format="mimic4_note", max_tokens=256, min_token_count=2)
    return out, ingest_notes(config, demo_notes.cohort, out, context(out.parent))
