"""The dashboard section of a DICOM modality: the image as the model saw it, with window/level and the
occlusion heatmap overlay; a volume as a scroller over its axial slices."""

from __future__ import annotations

import numpy as np
import streamlit as st
from clinfuse.dashboards.charts import compose_image
from clinfuse.kinds.dicom.store import IMAGES, VOLUMES, holds_volumes
from clinfuse.platform.kinds import SectionData

HEATMAP_NOTE = "The heatmap shows where hiding the image lowers the risk (occlusion sensitivity)."


def render_image_section(section: SectionData) -> None:
    if holds_volumes(section.cache, section.modality):
        _render_volume(section)
    else:
        _render_image(section)


def axial_slice(volume: np.ndarray, k: int) -> np.ndarray:
    """Slice k of an (X, Y, Z) RAS array as radiologists view it from the feet: rows run anterior (top) to
    posterior, columns from the patient's right (viewer's left) to the patient's left."""
    return volume[::-1, ::-1, k].T


def _controls(name: str, has_heatmap: bool) -> tuple[bool, float, float, float]:
    """Overlay toggle, window level and width, overlay opacity."""
    overlay = st.toggle("Attribution heatmap overlay", value=True, key=f"overlay_{name}", disabled=not has_heatmap)
    level = st.slider("Level (window centre)", 0.0, 1.0, 0.5, 0.01, key=f"level_{name}")
    width = st.slider("Window width", 0.05, 1.0, 1.0, 0.01, key=f"width_{name}")
    opacity = st.slider("Overlay opacity", 0.1, 1.0, 0.6, 0.05, key=f"opacity_{name}", disabled=not overlay)
    return overlay, level, width, opacity


def _render_image(section: SectionData) -> None:
    name, entry = section.modality, section.entry
    image = np.asarray(section.cache.array(name, IMAGES)[section.row], dtype=np.float32)
    picture, controls = st.columns([3, 2])
    with controls:
        overlay, level, width, opacity = _controls(name, entry.get("heatmap") is not None)
        geometry = entry.get("source_geometry") or {}
        st.caption(
            "The image as the model saw it (windowed at ingestion, resized and padded to "
            f"{image.shape[-1]}×{image.shape[-1]}"
            + (f"; source {geometry['rows']}×{geometry['cols']} pixels" if geometry.get("rows") else "")
            + "). "
            + HEATMAP_NOTE
        )
    heatmap = entry.get("heatmap") if overlay else None
    with picture:
        st.image(compose_image(image, level, width, heatmap, opacity), width=460,
                 caption=f"{name}" + (" with attribution overlay" if heatmap is not None else ""))  # fmt: skip


def _render_volume(section: SectionData) -> None:
    name, entry = section.modality, section.entry
    volume = section.cache.array(name, VOLUMES)[section.row]  # (X, Y, Z), memory-mapped
    spacing = section.cache.json(name, VOLUMES)["voxel_spacing"]  # volumes.json
    heatmap = entry.get("heatmap")
    slices = volume.shape[2]
    mass = None if heatmap is None else np.clip(np.asarray(heatmap, np.float32), 0, None).sum(axis=(0, 1))
    start = int(np.argmax(mass)) if mass is not None and mass.max() > 0 else slices // 2
    picture, controls = st.columns([3, 2])
    with controls:
        k = st.slider("Axial slice (inferior to superior)", 0, slices - 1, start, key=f"slice_{name}")
        overlay, level, width, opacity = _controls(name, heatmap is not None)
        st.caption(
            f"Axial slice {k + 1} of {slices} of the volume as the model saw it (resampled to "
            f"{'×'.join(str(n) for n in volume.shape)} voxels of {' × '.join(f'{s:g}' for s in spacing)} mm), "
            "viewed from the feet: the patient's right on the left, anterior at the top. " + HEATMAP_NOTE
        )
    image = np.asarray(axial_slice(volume, k), np.float32)
    heat = np.asarray(axial_slice(heatmap, k), np.float32) if heatmap is not None and overlay else None
    peak = float(np.max(heatmap)) if heat is not None else None  # the whole volume's: its 99th percentile is often 0
    caption = f"{name}, axial slice {k + 1}/{slices}" + (" with attribution overlay" if heat is not None else "")
    with picture:
        st.image(compose_image(image, level, width, heat, opacity, peak=peak), width=460, caption=caption)
