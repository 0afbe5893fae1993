"""The `dicom` modality kind: DICOM images (pydicom + pylibjpeg decoders), the latest before the index time,
windowed as DICOM defines it and resized with MONAI, or (`volume: true`) the latest series assembled into a
volume and resampled with MONAI; a CNN or MONAI DenseNet encoder in 2D or 3D; occlusion-sensitivity heatmaps."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from clinfuse.kinds.dicom.config import DicomModality
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds import FeatureBlock, ModalityKind, Reader, SectionData


class DicomKind(ModalityKind):
    name = "dicom"
    label = "image"
    config_model = DicomModality
    architectures: ClassVar[tuple[str, ...]] = ("small_cnn", "densenet121", "densenet121_3d")
    default_architectures: ClassVar[dict[str, str]] = {"gpu": "densenet121", "cpu": "small_cnn"}
    channels_last = True
    worker_modules: ClassVar[tuple[str, ...]] = ("clinfuse.kinds.dicom.ingest", "monai.transforms", "pylibjpeg")

    def ingest(self, config, cohort, out: Path, context):
        from clinfuse.kinds.dicom.ingest import ingest_dicom

        return ingest_dicom(config, cohort, out, context)

    def why_absent(self, report: dict) -> str:
        selection = report["selection"]
        unit = "series" if "series_found" in report else "images"
        return (
            f"{report['files_seen']} files: {selection['not_in_cohort']} {unit} of patients not in the cohort table, "
            f"{selection['after_index_time']} taken at or after the index time, {report['failed']['count']} files "
            f"failed, {report['skipped']['count']} skipped"
        )

    def reader(self, cache, name: str) -> tuple[Reader, dict[str, int]]:
        from clinfuse.kinds.dicom.tensors import image_reader

        return image_reader(cache, name)

    def augmenter(self, seed: int):
        from clinfuse.kinds.dicom.tensors import ImageAugmenter

        return ImageAugmenter(seed)

    def build_encoder(self, spec):
        from clinfuse.kinds.dicom.encoder import MonaiDenseNet, SmallCNN

        volume = spec.dims.get("spatial_dims") == 3
        if spec.architecture == "densenet121_3d" and not volume:
            raise ClinFuseError(
                "the encoder densenet121_3d needs volumes, but this dicom modality holds 2D images",
                "choose densenet121 or small_cnn for it, or ingest the modality with volume: true",
            )
        if spec.architecture == "small_cnn":  # half the width in 3D: a batch of volumes costs ~6x a batch of images
            return SmallCNN(spec.embed_dim, width=8, spatial_dims=3) if volume else SmallCNN(spec.embed_dim)
        return MonaiDenseNet(spec.embed_dim, spatial_dims=3 if volume else 2)

    def baseline_features(self, cache, name: str, embed_dim: int) -> FeatureBlock:
        from clinfuse.kinds.dicom.tensors import embedding_block

        return embedding_block(embed_dim)

    def attribution_context(self, cache, name: str, background: np.ndarray | None):
        from clinfuse.models.explain.within_modality import AttributionContext

        return AttributionContext()

    def attribute(self, branch, inputs, context):
        from clinfuse.kinds.dicom.attribution import image_attribution

        return image_attribution(branch, inputs, context)

    def describe_source(self, cache, name: str, row: int) -> dict:
        """Where the heatmap lies: a source image's size (mapped back onto the DICOM's pixels), or a volume's
        voxel-to-RAS affine and voxel spacing (patient millimetres)."""
        from clinfuse.kinds.dicom.store import IMAGES, VOLUMES, holds_volumes

        if holds_volumes(cache, name):
            index = cache.json(name, VOLUMES)
            source = index["rows"][row]
            return {"source_geometry": {"affine": source["affine"], "voxel_spacing": index["voxel_spacing"],
                                        "slices": source["slices"], "layout": source["layout"]}}  # fmt: skip
        source = cache.json(name, IMAGES)["rows"][row]
        size = int(cache.array(name, IMAGES).shape[-1])
        return {"source_geometry": {"rows": source["rows"], "cols": source["cols"], "size": size}}

    def render_section(self, section: SectionData) -> bool:
        from clinfuse.kinds.dicom.section import render_image_section

        render_image_section(section)
        return True

    def request_cell(self, config, patient_id: str):
        from clinfuse.kinds.dicom.request import dicom_request_cell

        return dicom_request_cell(config, patient_id)

    def write_request_source(self, settings, cells, folder: Path):
        from clinfuse.kinds.dicom.request import write_dicom_request

        return write_dicom_request(settings, cells, folder)
