"""The dashboard's only door to data: the scores file, the model bundle, the feature cache and the explainer.

Nothing here retrains or rescores: the scores come from `clinfuse score`, each modality's data (read by its
kind's dashboard section) from the scoring feature cache, explanations from the registered model's explainer.
Pages receive plain objects
(`Scores`, `Explanation`, numpy arrays, DataFrames) and never import the pipelines. No streamlit import: caching
is the app's business (app.py wraps these calls in st.cache_data / st.cache_resource).
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from clinfuse.pipelines.scoring.results import ScoreResults
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds import SectionData

METRICS_FILE = "metrics.json"
MODEL_CARD_FILES = ("model_card.md", "report.md")
CALIBRATION_PLOT = "calibration.png"
MEMO_PATIENTS = 1024  # explanations kept per process (a few kB each without the heatmap)


@dataclass(frozen=True)
class Scores:
    """One scoring run as the dashboard shows it. `table` has one row per patient, ranked by risk (NaN last)."""

    path: Path
    table: pd.DataFrame
    modalities: dict[str, str]  # name -> kind, in configuration order
    model_name: str
    model_version: str
    aliases: list[str]
    model_dir: Path
    scored_at: str
    has_contributions: bool

    def present(self, patient: str) -> list[str]:
        row = self.row(patient)
        return [m for m in str(row["modalities_present"] or "").split("+") if m]

    def highest_risk(self, n: int) -> list[str]:
        """The n highest-risk scored patients (the table is ranked)."""
        return self.table.loc[self.table["risk"].notna(), "patient_id"].head(n).tolist()

    def row(self, patient: str) -> pd.Series:
        rows = self.table.loc[self.table["patient_id"] == patient]
        if rows.empty:
            raise ClinFuseError(f"patient '{patient}' is not in the scores", "pick a patient from the cohort page")
        return rows.iloc[0]


@dataclass
class Explanation:
    """A patient's explanation in plain values. Absent modalities are listed, never given a value."""

    patient: str
    risk: float
    probability_base: float
    probability_values: dict[str, float]  # present modalities only
    logit_values: dict[str, float]
    absent: list[str]
    within: dict[str, dict] = field(default_factory=dict)  # name -> {kind, top, heatmap, source_geometry, detail}
    xgboost: dict | None = None  # probability, logit_values, logit_base, absent

    def to_json(self) -> dict:
        within = {name: {k: v for k, v in entry.items() if k != "heatmap"} for name, entry in self.within.items()}
        return {
            "patient": self.patient,
            "risk": self.risk,
            "probability_base": self.probability_base,
            "probability_values": self.probability_values,
            "logit_values": self.logit_values,
            "absent": self.absent,
            "within": within,
            "xgboost": self.xgboost,
        }


def scores_version(path: Path) -> str:
    """Changes whenever the scores file is replaced: part of every cache key, so a rescoring is picked up."""
    stat = Path(path).stat()
    return f"{stat.st_mtime_ns}-{stat.st_size}"


def open_results(path: Path) -> ScoreResults:
    path = Path(path)
    if not path.is_file():
        raise ClinFuseError(f"scores file {path} not found", "run `clinfuse score ... --out PATH` first")
    return ScoreResults.open(path)


def load_scores(path: Path) -> Scores:
    """The score table, normalised: ranked by calibrated risk (unscored patients last), text columns filled."""
    results = open_results(path)
    table = results.table.copy()
    for column in ("warnings", "error", "modalities_present"):
        table[column] = table[column].fillna("").astype(str) if column in table else ""
    table["patient_id"] = table["patient_id"].astype(str)
    table = table.sort_values("risk", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    scored_at = str(table["scored_at"].iloc[0]) if "scored_at" in table and len(table) else ""
    return Scores(
        path=Path(path),
        table=table,
        modalities=dict(results.modalities),
        model_name=str(results.model_name),
        model_version=str(results.model_version),
        aliases=list(results.aliases),
        model_dir=Path(results.model_dir),
        scored_at=scored_at,
        has_contributions="contribution_base" in table,
    )


def contributions_from_table(scores: Scores, patient: str) -> tuple[float, dict[str, float], list[str]] | None:
    """Base risk, per-modality contributions of present modalities and the absent ones, from `--explain` columns."""
    if not scores.has_contributions:
        return None
    row = scores.row(patient)
    base = float(row["contribution_base"])
    if base != base:
        return None
    values, absent = {}, []
    for name in scores.modalities:
        value = row.get(f"contribution_{name}", np.nan)
        if value is None or value != value:
            absent.append(name)
        else:
            values[name] = float(value)
    return base, values, absent


class PatientData:
    """Heavy, shared resources of one scores file: the feature cache and the explainer (loaded on first use), and
    the patients' explanations, each computed once per process."""

    def __init__(self, path: Path) -> None:
        from clinfuse.platform.cache import FeatureCache

        self.results = open_results(path)
        self.cache = FeatureCache(self.results.cache)
        self.modalities = dict(self.results.modalities)
        self._row_of = {p: i for i, p in enumerate(self.cache.cohort["patient"].astype(str))}
        # A future per patient: whoever asks first computes, later askers (the page, the prefetcher) wait for it.
        self._explained: OrderedDict[str, Future[Explanation]] = OrderedDict()
        self._memo_lock = threading.Lock()
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._prefetcher: threading.Thread | None = None
        self._explainer = None
        self._lock = threading.Lock()  # explanations run autograd on one shared model: one at a time
        self._load_lock = threading.Lock()

    def _cohort_row(self, patient: str) -> int | None:
        return self._row_of.get(patient)

    def section_data(self, modality: str, patient: str, entry: dict) -> SectionData | None:
        """What the modality's dashboard section draws for this patient, or None when the cache has no data."""
        row = self._cohort_row(patient)
        index = -1 if row is None else int(self.cache.rows(modality)[row])
        if index < 0:
            return None
        return SectionData(modality=modality, patient=patient, row=index, cache=self.cache, entry=entry)

    @property
    def explainer(self):
        if self._explainer is None:
            with self._load_lock:
                if self._explainer is None:
                    self._explainer = self.results.explainer()
        return self._explainer

    def explain(self, patient: str) -> Explanation:
        """The patient's explanation, computed once per process; one being computed (prefetched) is waited for,
        never computed twice. A failure is not kept: asking again retries, and raises with its message."""
        with self._memo_lock:
            future = self._explained.get(patient)
            computing = future is None
            if computing:
                future = self._explained[patient] = Future()
                self._forget_oldest()
            else:
                self._explained.move_to_end(patient)
        if computing:
            try:
                future.set_result(self._compute(patient))
            except BaseException as exc:  # the waiters get it too, so none waits forever
                with self._memo_lock:
                    self._explained.pop(patient, None)
                future.set_exception(exc)
        return future.result()

    def _forget_oldest(self) -> None:
        """Keep MEMO_PATIENTS explanations, dropping the least recently asked finished ones (caller holds the lock)."""
        excess = len(self._explained) - MEMO_PATIENTS
        if excess > 0:
            for patient in [p for p, future in self._explained.items() if future.done()][:excess]:
                del self._explained[patient]

    def prefetch(self, patients: list[str]) -> None:
        """Explain these patients in the background (loading the explainer first, if needed), so opening them is
        instant: the highest-risk ones from the cohort page, a patient's neighbours in the ranking while it is read."""
        with self._memo_lock:
            wanted = [p for p in patients if p not in self._explained and p in self._row_of]
            for patient in wanted:
                self._queue.put(patient)
            if wanted and self._prefetcher is None:
                self._prefetcher = threading.Thread(target=self._prefetch_loop, name="clinfuse-prefetch", daemon=True)
                self._prefetcher.start()

    def _prefetch_loop(self) -> None:
        while True:
            patient = self._queue.get()
            with contextlib.suppress(Exception):  # a failure shows, with its message, when the patient is opened
                self.explain(patient)

    def _compute(self, patient: str) -> Explanation:
        with self._lock:
            raw = self.explainer.explain(patient, store_heatmaps=False)  # the bundle stays read-only
        within = {}
        for name, entry in raw.within.items():
            heatmap = entry.get("heatmap_array")
            within[name] = {
                "kind": entry["kind"],
                "top": list(entry["top"]),
                "heatmap": None if heatmap is None else np.asarray(heatmap, dtype=np.float32),
                "source_geometry": entry.get("source_geometry"),
                "detail": entry.get("detail") or {},
            }
        shapley = raw.modality
        return Explanation(
            patient=patient,
            risk=float(raw.risk),
            probability_base=float(shapley.probability_base),
            probability_values=dict(shapley.probability_values),
            logit_values=dict(shapley.logit_values),
            absent=list(shapley.absent),
            within=within,
            xgboost=raw.xgboost,
        )


def model_metrics(model_dir: Path) -> dict | None:
    path = Path(model_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def model_card(model_dir: Path) -> str | None:
    for name in MODEL_CARD_FILES:
        path = Path(model_dir) / name
        if path.is_file():
            return path.read_text()
    return None


def calibration_plot(model_dir: Path) -> bytes | None:
    path = Path(model_dir) / CALIBRATION_PLOT
    return path.read_bytes() if path.is_file() else None


def source_ids(cohort_config: Path) -> dict[str, str]:
    """Pseudonym -> source patient id, recomputed from a cohort table with the pseudonym key (for display only)."""
    from clinfuse.platform.config.loader import load_cohort_config
    from clinfuse.platform.ingest.cohort_table import load_cohort
    from clinfuse.platform.security import Pseudonymiser, load_pseudonym_key

    config = load_cohort_config(cohort_config, check_files=False, labels_required=False)
    pseudonymise = Pseudonymiser(load_pseudonym_key() if config.pseudonymise_ids else None, config.pseudonymise_ids)
    return {pseudonymise(pid): pid for pid in load_cohort(config, scoring=True).patient_ids}
