"""cohort.yaml fields of a `dicom` modality."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from clinfuse.platform.kinds import KindConfig
from pydantic import Field, model_validator

FrameRule = Literal["middle", "max_intensity", "first"]


class DicomModality(KindConfig):
    """DICOM images linked to patients by the PatientID tag or by a manifest CSV (patient_id, path).

    2D (default): one image per patient, the one acquired last before the index time (acquisition date/time,
    else content, series, then study date/time); a multi-frame object gives one frame by `frame`.
    `volume: true`: one 3D volume per patient, the latest qualifying series (single-frame slices grouped by
    Study/Series Instance UID, or one multi-frame object) before the index time, resampled to a fixed voxel grid.
    Images after the index time never count.
    """

    kind: Literal["dicom"]
    path_fields: ClassVar[tuple[str, ...]] = ("manifest",)
    site_fields: ClassVar[tuple[str, ...]] = (
        "link", "max_decoded_mib", "allow_burned_in", "unmarked_secondary_capture",
    )  # fmt: skip
    link: Literal["patient_id_tag", "manifest"] = "patient_id_tag"
    manifest: Path | None = None
    image_size: int = Field(128, ge=16, le=1024, description="2D: square side after resizing")
    window: tuple[float, float] | None = Field(
        None, description="(center, width) in modality units; wins over the header's VOI LUT and windows"
    )
    window_index: int = Field(
        0, ge=0, description="which of the header's windows (or VOI LUTs) to apply when there are several"
    )
    frame: FrameRule = Field("middle", description="2D: the frame taken from a multi-frame object")
    max_decoded_mib: float = Field(
        512,
        gt=0,
        description="largest decoded object accepted (Rows x Columns x frames x samples x bytes, from the header); "
        "a file claiming more fails with the reason before any pixel is decoded",
    )
    allow_burned_in: bool = Field(
        False,
        description="keep images marked BurnedInAnnotation = YES (only where pixels have been scrubbed of PHI)",
    )
    unmarked_secondary_capture: Literal["exclude", "keep"] = Field(
        "exclude",
        description="secondary captures without a BurnedInAnnotation attribute: screenshots often carry "
        "printed names, so they are excluded unless the site keeps them",
    )
    volume: bool = Field(False, description="3D: assemble each patient's latest series into a volume")
    voxel_spacing: tuple[float, float, float] = Field(
        (5.0, 5.0, 5.0), description="3D: voxel size in mm along R, A, S after resampling"
    )
    volume_shape: tuple[int, int, int] = Field(
        (64, 64, 48), description="3D: voxels along R, A, S after resampling (cropped or padded around the centre)"
    )
    min_slices: int = Field(8, ge=2, description="3D: a series with fewer slices (or frames) does not qualify")
    max_gap_ratio: float = Field(
        1.5, gt=1.0, description="3D: a gap between slices over this multiple of the median spacing is a missing slice"
    )

    def listed_inputs(self) -> list[Path] | None:
        if self.link != "manifest" or self.manifest is None:
            return None
        from clinfuse.kinds.dicom.headers import read_manifest

        return sorted(read_manifest(self.manifest, self.path))

    @model_validator(mode="after")
    def _manifest_when_linked_by_manifest(self) -> DicomModality:
        if self.link == "manifest" and self.manifest is None:
            raise ValueError("link: manifest needs a 'manifest' CSV path with columns patient_id, path")
        if self.window is not None and self.window[1] <= 0:
            raise ValueError("window is [center, width] with a positive width")
        if min(self.voxel_spacing) <= 0:
            raise ValueError("voxel_spacing is [R, A, S] in mm, each positive")
        if min(self.volume_shape) < 8 or max(self.volume_shape) > 512:
            raise ValueError("volume_shape is [R, A, S] in voxels, each between 8 and 512")
        return self
