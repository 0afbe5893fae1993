"""Helpers of the waveform kind's tests: a cohort, an ingest call and a read-only view of the modality folder."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clinfuse.kinds.waveform import WaveformKind
from clinfuse.platform.ingest.cohort_table import Cohort
from clinfuse.platform.ingest.context import IngestContext, ModalityOutput
from clinfuse.platform.security import Pseudonymiser

INDEX_TIME = datetime(2150, 6, 1, 12, 0)


class FolderCache:
    """The parts of FeatureCache a kind reads (array, json), over one ingested modality folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def array(self, modality: str, name: str) -> np.ndarray:
        return np.load(self.folder / f"{name}.npy", mmap_mode="r")

    def json(self, modality: str, name: str) -> dict:
        return json.loads((self.folder / f"{name}.json").read_text())


def make_cohort(ids: list[str], split: str = "train") -> Cohort:
    return Cohort(pd.DataFrame({"patient_id": ids, "label": [i % 2 for i in range(len(ids))],
                                "index_time": pd.Timestamp(INDEX_TIME), "split": split}))  # fmt: skip


def run_ingest(root: Path, ids: list[str], out: Path, alignment: dict | None = None, **fields: object
               ) -> ModalityOutput:  # fmt: skip
    kind = WaveformKind()
    config = kind.config_model(name="ecg", path=root, kind="waveform", **fields)
    context = IngestContext(pseudonymise=Pseudonymiser(None, enabled=False), scratch=out.parent / "scratch",
                            previous=None, alignment=alignment)  # fmt: skip
    return kind.ingest(config, make_cohort(ids, "score" if alignment else "train"), out, context)


@pytest.fixture
def folder_cache() -> type[FolderCache]:
    return FolderCache


@pytest.fixture
def ingest() -> object:
    return run_ingest
