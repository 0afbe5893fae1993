"""Schema of cohort.yaml: the cohort table plus any number of modalities, each of one `kind`.

Modalities are data, not code paths: downstream stages loop over `CohortConfig.modalities` and dispatch on
`kind`; nothing names "imaging" or "genomics".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CohortTable(_Strict):
    """The patient table: one row per patient with the outcome and the index time."""

    path: Path
    patient_id: str = "patient_id"
    label: str = "label"
    index_time: str = "index_time"
    split: str | None = None
    sex: str | None = None
    age: str | None = None


class SplitConfig(_Strict):
    """Patient-level, label-stratified, seeded split (ignored when the cohort has a split column)."""

    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1.0, got {total:g}")
        return self


class _Modality(_Strict):
    name: str = Field(pattern=_NAME_PATTERN, description="lower-case identifier, e.g. 'imaging'")
    path: Path


class DicomModality(_Modality):
    """DICOM images linked to patients by the PatientID tag or by a manifest CSV (patient_id, path).

    When a patient has several images, the one acquired last before the index time is used
    (acquisition date/time, else series/study date/time); images after the index time never count.
    """

    kind: Literal["dicom"]
    link: Literal["patient_id_tag", "manifest"] = "patient_id_tag"
    manifest: Path | None = None
    image_size: int = Field(128, ge=16, le=1024, description="square side after resizing")
    window: tuple[float, float] | None = Field(
        None, description="(center, width) in modality units; default: the header's first window"
    )
    max_decoded_mib: float = Field(
        512,
        gt=0,
        description="largest decoded object accepted (Rows x Columns x frames x samples x bytes, from the header); "
        "a file claiming more fails with the reason before any pixel is decoded",
    )

    @model_validator(mode="after")
    def _manifest_when_linked_by_manifest(self) -> DicomModality:
        if self.link == "manifest" and self.manifest is None:
            raise ValueError("link: manifest needs a 'manifest' CSV path with columns patient_id, path")
        return self


class TableModality(_Modality):
    """A wide (patient x feature) or long (patient, feature, value) CSV/TSV/Parquet table."""

    kind: Literal["table"]
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


class EhrModality(_Modality):
    """EHR read through PyHealth: MIMIC-IV CSV layout (hosp/, icu/)."""

    kind: Literal["ehr"]
    source: Literal["mimic4"] = "mimic4"
    tables: tuple[str, ...] = ("diagnoses_icd", "procedures_icd", "prescriptions", "labevents")
    max_codes: int = Field(256, ge=8, le=4096, description="most recent codes kept per patient")
    min_code_count: int = Field(2, ge=1, description="codes rarer than this in training map to <unk>")


ModalityConfig = Annotated[DicomModality | TableModality | EhrModality, Field(discriminator="kind")]


class CohortConfig(_Strict):
    """A whole cohort: where the patients are and which modalities describe them."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    cohort: CohortTable
    modalities: tuple[ModalityConfig, ...] = Field(min_length=1)
    split: SplitConfig = SplitConfig()
    pseudonymise_ids: bool = True

    @field_validator("modalities")
    @classmethod
    def _unique_names(cls, modalities: tuple[ModalityConfig, ...]) -> tuple[ModalityConfig, ...]:
        names = [m.name for m in modalities]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"duplicate modality name(s) {duplicated}: give each modality its own name")
        return modalities

    def modality(self, name: str) -> ModalityConfig:
        for modality in self.modalities:
            if modality.name == name:
                return modality
        raise KeyError(name)
