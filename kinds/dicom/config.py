"""cohort.yaml fields of a `dicom` modality."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from clinfuse.platform.kinds import KindConfig
from pydantic import Field, model_validator


class DicomModality(KindConfig):
    """DICOM images linked to patients by the PatientID tag or by a manifest CSV (patient_id, path).

    When a patient has several images, the one acquired last before the index time is used
    (acquisition date/time, else series/study date/time); images after the index time never count.
    """

    kind: Literal["dicom"]
    path_fields: ClassVar[tuple[str, ...]] = ("manifest",)
    site_fields: ClassVar[tuple[str, ...]] = ("link", "max_decoded_mib")
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
