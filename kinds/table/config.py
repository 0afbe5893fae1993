"""cohort.yaml fields of a `table` modality."""

from __future__ import annotations

from typing import ClassVar, Literal

from clinfuse.platform.kinds import KindConfig
from pydantic import model_validator


class TableModality(KindConfig):
    """A wide (patient x feature) or long (patient, feature, value) CSV/TSV/Parquet table."""

    kind: Literal["table"]
    path_is_file: ClassVar[bool] = True
    layout: Literal["wide", "long"] = "wide"
    patient_id: str = "patient_id"
    feature_column: str = "feature"
    value_column: str = "value"
    exclude_columns: tuple[str, ...] = ()
    on_duplicate_patient: Literal["error", "mean", "first"] = "error"
    on_non_numeric: Literal["error", "coerce"] = "error"
    on_all_nan_column: Literal["error", "drop"] = "drop"

    @model_validator(mode="after")
    def _id_column_is_kept_and_distinct(self) -> TableModality:
        if self.patient_id in self.exclude_columns:
            raise ValueError(f"exclude_columns holds the patient id column '{self.patient_id}': remove it there")
        roles = (self.patient_id, self.feature_column, self.value_column)
        if self.layout == "long" and len(set(roles)) < len(roles):
            raise ValueError("patient_id, feature_column and value_column must name three different columns")
        return self
