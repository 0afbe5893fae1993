"""The cohort table: validated patients with label and index time, and their patient-level split."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from clinfuse.platform.config import CohortConfig
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.ingest.table_source import read_source_table
from sklearn.model_selection import train_test_split

SPLITS: tuple[str, ...] = ("train", "val", "test")
SCORING_SPLIT = "score"  # every patient of a cohort ingested for scoring (no training, no split)
MAX_AGE = 150


@dataclass(frozen=True)
class Cohort:
    """One row per patient: source id, label, index time, split, optional sex/age."""

    table: (
        pd.DataFrame
    )  # columns: patient_id, label (NaN when scoring without outcomes), index_time, split, [sex], [age]

    @property
    def patient_ids(self) -> list[str]:
        return self.table["patient_id"].tolist()

    def index_times(self) -> dict[str, pd.Timestamp]:
        return dict(zip(self.table["patient_id"], self.table["index_time"], strict=True))

    def ids_in(self, split: str) -> set[str]:
        return set(self.table.loc[self.table["split"] == split, "patient_id"])


def load_cohort(config: CohortConfig, scoring: bool = False) -> Cohort:
    """Read and validate the cohort table, then assign splits (the table's own, or stratified and seeded).

    For scoring, the outcome is optional (kept when present, for later monitoring) and every patient is in
    the one split `score`.
    """
    spec = config.cohort
    where = f"cohort table ({spec.path.name})"
    raw = read_source_table(spec.path, spec.patient_id, where)
    for field in ("patient_id", "label", "index_time", "split", "sex", "age"):
        column = getattr(spec, field)
        if column is not None and column not in raw.columns and not (field == "label" and scoring):
            raise ClinFuseError(
                f"cohort.{field}: column '{column}' is absent from {spec.path.name}",
                f"set cohort.{field} to one of {sorted(map(str, raw.columns))[:10]}",
            )
    if raw.empty:
        raise ClinFuseError(f"{where} has no patients (a header but no rows)", "add one row per patient")
    ids = raw[spec.patient_id].astype("string").str.strip()
    if ids.isna().any() or ids.eq("").any():
        raise ClinFuseError(f"cohort column '{spec.patient_id}' has empty patient ids", "fill or drop those rows")
    table = pd.DataFrame({"patient_id": ids.astype(str)})
    duplicated = table["patient_id"][table["patient_id"].duplicated()].unique()
    if len(duplicated):
        raise ClinFuseError(
            f"cohort table has {len(duplicated)} duplicated patient id(s) in '{spec.patient_id}'",
            "keep one row per patient (one outcome per patient and index time)",
        )
    if scoring:  # outcomes are optional when scoring: empty cells are unknown, but anything else must be 0/1
        table["label"] = _binary_labels(raw[spec.label], spec.label, missing_ok=True) if spec.label in raw else np.nan
    else:
        table["label"] = _binary_labels(raw[spec.label], spec.label)
    table["index_time"] = _timestamps(raw[spec.index_time], spec.index_time)
    if spec.sex:
        table["sex"] = raw[spec.sex].astype(str).str.strip().str.upper().str[:1].where(raw[spec.sex].notna())
    if spec.age:
        table["age"] = _ages(raw[spec.age], spec.age)
    if scoring:
        table["split"] = SCORING_SPLIT
    elif spec.split:
        table["split"] = _given_splits(raw[spec.split], spec.split)
    else:
        table["split"] = _stratified_splits(table, config)
    return Cohort(table=table.reset_index(drop=True))


def _binary_labels(column: pd.Series, name: str, missing_ok: bool = False) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    bad = column[~values.isin([0, 1]) & ~(missing_ok & column.isna())]
    if len(bad):
        raise ClinFuseError(
            f"cohort label column '{name}' must hold 0/1; found {len(bad)} other value(s), e.g. {bad.iloc[0]!r}",
            "encode the outcome as 0 (no event) and 1 (event)" + (" or leave it empty" if missing_ok else ""),
        )
    return values if missing_ok else values.astype(int)


def _ages(column: pd.Series, name: str) -> pd.Series:
    """Ages in years; empty or text cells ('unknown') are missing, but a number outside 0-150 (inf, a sentinel
    such as -1 or 999, days instead of years) is an export error that would skew the subgroup reports."""
    values = pd.to_numeric(column, errors="coerce").astype("float64")
    bad = values.notna() & ~values.between(0, MAX_AGE)
    if bad.any():
        raise ClinFuseError(
            f"cohort age column '{name}' has {int(bad.sum())} value(s) outside 0-{MAX_AGE} years, "
            f"e.g. {column[bad].iloc[0]} at data row {int(np.flatnonzero(bad)[0]) + 1}",
            "fix them in the export or leave those cells empty (missing)",
        )
    return values


def _timestamps(column: pd.Series, name: str) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # mixed UTC offsets give an object column, handled below
        parsed = pd.to_datetime(column, errors="coerce", format="mixed")
    if parsed.dtype == object:  # mixed UTC offsets (e.g. either side of a DST change): keep each wall-clock time
        parsed = pd.to_datetime(parsed.map(lambda t: t.replace(tzinfo=None) if getattr(t, "tzinfo", None) else t))
    if parsed.isna().any():
        example = column[parsed.isna()].iloc[0]
        raise ClinFuseError(
            f"cohort index time column '{name}' has {int(parsed.isna().sum())} unparseable value(s), e.g. {example!r}",
            "use ISO timestamps such as 2150-03-01 08:00:00",
        )
    return parsed.dt.tz_localize(None) if parsed.dt.tz is not None else parsed


def _given_splits(column: pd.Series, name: str) -> pd.Series:
    values = column.astype(str).str.strip().str.lower()
    unknown = sorted(set(values) - set(SPLITS))
    if unknown:
        raise ClinFuseError(f"cohort split column '{name}' has unknown value(s) {unknown}", "use train, val or test")
    return values


def _stratified_splits(table: pd.DataFrame, config: CohortConfig) -> pd.Series:
    fractions = config.split
    ids = table["patient_id"].to_numpy()
    labels = table["label"].to_numpy()
    if min(np.bincount(labels, minlength=2)) < 3:
        raise ClinFuseError("the cohort needs at least 3 patients of each label to split it", "add patients")
    try:
        train, rest = train_test_split(ids, train_size=fractions.train, stratify=labels, random_state=fractions.seed)
        rest_labels = table.set_index("patient_id").loc[rest, "label"].to_numpy()
        val_share = fractions.val / (fractions.val + fractions.test)
        val, test = train_test_split(rest, train_size=val_share, stratify=rest_labels, random_state=fractions.seed)
    except ValueError as exc:  # too few patients of a label for every split to hold both labels
        raise ClinFuseError(
            f"the cohort ({len(ids)} patients) is too small for a label-stratified "
            f"{fractions.train:g}/{fractions.val:g}/{fractions.test:g} split with both labels in every split",
            "add patients, or give the cohort a split column (cohort.split)",
        ) from exc
    assignment = {**dict.fromkeys(train, "train"), **dict.fromkeys(val, "val"), **dict.fromkeys(test, "test")}
    return table["patient_id"].map(assignment)
