"""Table modalities: read wide or long CSV/TSV/Parquet, clean per the config's policies, align features.

Every fix is counted in the report; with a policy of `error` the problem stops the ingest with a message
naming the column, an example and the option that would fix it instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from clinfuse.kinds.table.config import TableModality
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.ingest.table_source import read_source_table

# Features are stored as float32: a value beyond its range would become inf in the cache, so it counts as
# non-finite (an export or unit error) just as inf does.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# z-scores are clipped here (counted): a value 10,000 standard deviations from the training mean is a data error,
# and a tiny training std must not turn a scoring value into inf.
Z_LIMIT = 1e4


def read_table(modality: TableModality) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Numeric patient x feature frame (index: patient id as str) and the counts of what was fixed."""
    where = f"table modality '{modality.name}' ({modality.path.name})"
    raw = read_source_table(modality.path, modality.patient_id, where)
    counts: dict[str, Any] = {"rows_read": len(raw)}
    if modality.patient_id not in raw.columns:
        raise ClinFuseError(
            f"{where}: patient id column '{modality.patient_id}' not found",
            f"set patient_id to one of {list(raw.columns[:5])}",
        )
    if raw.empty:
        raise ClinFuseError(f"{where}: the table has no data rows", "export it again with one row per patient")
    ids = raw[modality.patient_id].astype("string").str.strip()
    no_id = ids.isna() | ids.eq("")
    counts["rows_without_patient_id"] = int(no_id.sum())  # cannot belong to any patient: dropped, counted
    raw = raw[~no_id.to_numpy()].assign(**{modality.patient_id: ids[~no_id]})
    if modality.layout == "long":
        frame = _pivot_long(raw, modality, where, counts)
    else:
        frame = raw.drop(columns=[c for c in modality.exclude_columns if c in raw.columns]).set_index(
            modality.patient_id
        )
        frame = _deduplicate(frame, modality, where, counts)
    frame.index = frame.index.astype(str)
    frame.index.name = "patient_id"
    frame = _to_numeric(frame, modality, where, counts)
    return _drop_empty_columns(frame, modality, where, counts), counts


def _pivot_long(raw: pd.DataFrame, modality: TableModality, where: str, counts: dict[str, Any]) -> pd.DataFrame:
    needed = {modality.feature_column, modality.value_column} - set(raw.columns)
    if needed:
        raise ClinFuseError(f"{where}: long layout needs column(s) {sorted(needed)}", "set feature_column/value_column")
    keys = [modality.patient_id, modality.feature_column]
    duplicated = int(raw.duplicated(keys).sum())
    counts["duplicate_entries"] = duplicated
    if duplicated and modality.on_duplicate_patient == "error":
        raise ClinFuseError(
            f"{where}: {duplicated} duplicated (patient, feature) entries",
            "set on_duplicate_patient: mean or first to resolve them (counted in the report)",
        )
    values = pd.to_numeric(raw[modality.value_column], errors="coerce").astype("float64")
    _count_non_numeric(raw[modality.value_column], values, modality, where, counts, modality.value_column)
    non_finite = _non_finite(values)
    _count_non_finite(raw.loc[non_finite, modality.feature_column].astype(str).value_counts(), counts)
    raw = raw.assign(**{modality.value_column: values.mask(non_finite)})
    aggregate = "first" if modality.on_duplicate_patient == "first" else "mean"
    table = raw.pivot_table(
        index=modality.patient_id, columns=modality.feature_column, values=modality.value_column, aggfunc=aggregate
    )
    # pivot_table silently drops features and patients without any value: keep them, as the wide layout does,
    # so that on_all_nan_column sees (and counts) empty features
    patients = pd.Index(raw[modality.patient_id].dropna().unique()).sort_values()
    features = pd.Index(raw[modality.feature_column].dropna().unique()).sort_values()
    return table.reindex(index=patients, columns=features)


def _deduplicate(frame: pd.DataFrame, modality: TableModality, where: str, counts: dict[str, Any]) -> pd.DataFrame:
    duplicated = int(frame.index.duplicated().sum())
    counts["duplicate_patient_rows"] = duplicated
    if not duplicated:
        return frame
    if modality.on_duplicate_patient == "error":
        first_row = int(np.flatnonzero(frame.index.duplicated())[0]) + 1
        raise ClinFuseError(
            f"{where}: {duplicated} duplicated patient row(s), the first at data row {first_row}",
            "set on_duplicate_patient: mean or first to merge them (counted in the report)",
        )
    if modality.on_duplicate_patient == "first":
        return frame[~frame.index.duplicated(keep="first")]
    numeric = _to_numeric(frame, modality, where, counts)  # honours on_non_numeric before averaging
    return numeric.groupby(level=0, sort=False).mean()


def _to_numeric(frame: pd.DataFrame, modality: TableModality, where: str, counts: dict[str, Any]) -> pd.DataFrame:
    """Float64 columns; text per on_non_numeric, and non-finite values (inf, or beyond float32) become missing
    and are counted per feature: they would otherwise reach the z-scores and the model. Numeric columns are
    converted together (an expression table has thousands; per-column conversion cost seconds per request)."""
    counts.setdefault("non_numeric_cells", 0)
    columns = [str(c) for c in frame.columns]
    values = np.empty(frame.shape, dtype=np.float64)
    numeric = np.array([pd.api.types.is_numeric_dtype(t) for t in frame.dtypes], dtype=bool)
    if numeric.any():
        values[:, numeric] = frame.iloc[:, numeric].astype("float64").to_numpy()
    for i in np.flatnonzero(~numeric):
        converted = pd.to_numeric(frame.iloc[:, i], errors="coerce").astype("float64")
        _count_non_numeric(frame.iloc[:, i], converted, modality, where, counts, columns[i])
        values[:, i] = converted.to_numpy()
    non_finite = ~np.isnan(values) & ~(np.abs(values) <= FLOAT32_MAX)
    _count_non_finite(pd.Series(non_finite.sum(axis=0), index=columns), counts)
    values[non_finite] = np.nan
    return pd.DataFrame(values, index=frame.index, columns=columns)


def _non_finite(values: pd.Series) -> pd.Series:
    return values.notna() & ~(values.abs() <= FLOAT32_MAX)


def _count_non_finite(by_feature: pd.Series, counts: dict[str, Any]) -> None:
    counts["non_finite_cells"] = counts.get("non_finite_cells", 0) + int(by_feature.sum())
    per_feature = counts.setdefault("non_finite_cells_by_feature", {})
    for feature, n in by_feature[by_feature > 0].items():
        per_feature[feature] = per_feature.get(feature, 0) + int(n)


def _count_non_numeric(
    before: pd.Series, after: pd.Series, modality: TableModality, where: str, counts: dict[str, Any], column: str
) -> None:
    bad = before.notna() & after.isna()
    n_bad = int(bad.sum())
    if not n_bad:
        return
    if modality.on_non_numeric == "error":
        raise ClinFuseError(
            f"{where}: column '{column}' has {n_bad} non-numeric value(s), e.g. {before[bad].iloc[0]!r}",
            "fix the export, add the column to exclude_columns, or set on_non_numeric: coerce (they become missing)",
        )
    counts["non_numeric_cells"] = counts.get("non_numeric_cells", 0) + n_bad


def _drop_empty_columns(
    frame: pd.DataFrame, modality: TableModality, where: str, counts: dict[str, Any]
) -> pd.DataFrame:
    empty = list(frame.columns[frame.isna().all().to_numpy()])
    counts["all_nan_columns"] = len(empty)
    if empty and modality.on_all_nan_column == "error":
        raise ClinFuseError(
            f"{where}: {len(empty)} column(s) hold no values, e.g. '{empty[0]}'",
            "drop them from the export or set on_all_nan_column: drop (counted in the report)",
        )
    return frame.drop(columns=empty)


@dataclass
class TableAlignment:
    """The feature panel and normalisation fixed by the training split; applied unchanged at scoring."""

    features: list[str]
    median: list[float]
    mean: list[float]
    std: list[float]
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def fit(cls, train: pd.DataFrame) -> TableAlignment:
        """Fit on training patients only: columns with at least one training value, medians, mean and std."""
        usable = [c for c in train.columns if train[c].notna().any()]
        values = train[usable]
        median = values.median()
        filled = values.fillna(median)
        std = filled.std(ddof=0).replace(0.0, 1.0).fillna(1.0)
        return cls(usable, median.tolist(), filled.mean().tolist(), std.tolist())

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
        """Align columns to the panel (impute missing features, ignore extra ones), impute cells, z-score."""
        missing = [f for f in self.features if f not in frame.columns]
        extra = [c for c in frame.columns if c not in set(self.features)]
        aligned = frame.reindex(columns=self.features)
        values = aligned.to_numpy(dtype=np.float64)
        missing_cells = np.isnan(values)
        imputed_cells = int(missing_cells.sum())
        values = np.where(missing_cells, np.array(self.median, dtype=np.float64), values)
        with np.errstate(over="ignore"):  # an overflow is caught by the clip below, as any other huge z-score
            normalised = (values - np.array(self.mean)) / np.array(self.std)
        clipped = int((np.abs(normalised) > Z_LIMIT).sum())
        counts = {
            "panel_features": len(self.features),
            "missing_features_imputed": len(missing),
            "extra_features_ignored": len(extra),
            "imputed_cells": imputed_cells,
            "z_scores_clipped": clipped,
        }
        return np.clip(normalised, -Z_LIMIT, Z_LIMIT).astype(np.float32), counts

    def to_json(self) -> dict:
        return {"features": self.features, "median": self.median, "mean": self.mean, "std": self.std}

    @classmethod
    def from_json(cls, data: dict) -> TableAlignment:
        return cls(data["features"], data["median"], data["mean"], data["std"])
