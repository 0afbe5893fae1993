"""Read a feature cache: cohort table with splits and presence, and per-modality arrays (memory-mapped).

Layout (see docs/architecture.md):
    manifest.json        complete flag, fingerprints of inputs/config/code, every cache file's size
    ingest_report.json   counts per modality, failures with reasons, split sizes
    cohort.parquet       patient (pseudonym), label, split, [sex], [age], present_<m>, row_<m>
    modalities/<m>/      per kind: images.npy | features.parquet | codes.npy, labs.npy, ...
"""

from __future__ import annotations

import copy
import json
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from clinfuse.platform.errors import ClinFuseError

CACHE_FORMAT = 1
MANIFEST_FILE = "manifest.json"
REPORT_FILE = "ingest_report.json"
COHORT_FILE = "cohort.parquet"
MODALITIES_DIR = "modalities"


class FeatureCache:
    """A complete, verified feature cache. Opening an incomplete or damaged one fails with a clear error."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise ClinFuseError(f"{self.path} is not a ClinFuse feature cache", "run `clinfuse ingest` to build it")
        self.manifest = json.loads(manifest_path.read_text())
        if not self.manifest.get("complete") or self.manifest.get("format") != CACHE_FORMAT:
            raise ClinFuseError(
                f"feature cache {self.path} is incomplete or of another format", "rerun `clinfuse ingest`"
            )
        for relative, size in self.manifest["files"].items():
            file = self.path / relative
            if not file.is_file() or file.stat().st_size != size:
                raise ClinFuseError(f"feature cache {self.path} is damaged ({relative})", "rerun `clinfuse ingest`")

    @cached_property
    def cohort(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / COHORT_FILE)

    def with_splits(self, splits: np.ndarray) -> FeatureCache:
        """The same cache seen with another split per cohort row (cross-validation folds); no file changes."""
        if len(splits) != len(self.cohort):
            raise ValueError(f"{len(splits)} splits for {len(self.cohort)} cohort rows")
        view = copy.copy(self)
        cohort = self.cohort.copy()
        cohort["split"] = np.asarray(splits, dtype=object)
        view.__dict__["cohort"] = cohort
        return view

    @property
    def modalities(self) -> dict[str, str]:
        """Modality name -> kind, in config order."""
        return {name: entry["kind"] for name, entry in self.manifest["modalities"].items()}

    @cached_property
    def report(self) -> dict:
        return json.loads((self.path / REPORT_FILE).read_text())

    def modality_dir(self, name: str) -> Path:
        if name not in self.modalities:
            raise ClinFuseError(f"modality '{name}' is not in cache {self.path}", f"use one of {list(self.modalities)}")
        return self.path / MODALITIES_DIR / name

    def array(self, modality: str, name: str) -> np.ndarray:
        """A modality's array, memory-mapped; row r belongs to the patient whose row_<modality> is r."""
        return np.load(self.modality_dir(modality) / f"{name}.npy", mmap_mode="r")

    def table(self, modality: str, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.modality_dir(modality) / f"{name}.parquet")

    def json(self, modality: str, name: str) -> dict:
        return json.loads((self.modality_dir(modality) / f"{name}.json").read_text())

    def rows(self, modality: str) -> np.ndarray:
        """Per cohort patient, the row in the modality's arrays, -1 where the modality is absent."""
        return self.cohort[f"row_{modality}"].to_numpy()
