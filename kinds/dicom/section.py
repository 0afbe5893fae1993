"""The dashboard section of a DICOM modality: the image as the model saw it, with window/level and the
occlusion heatmap overlay."""

from __future__ import annotations

import numpy as np
import streamlit as st
from clinfuse.dashboards.charts import compose_image
from clinfuse.kinds.dicom.tensors import IMAGES
from clinfuse.platform.kinds import SectionData


def render_image_section(section: SectionData) -> None:
    name, entry = section.modality, section.entry
    image = np.asarray(section.cache.array(name, IMAGES)[section.row], dtype=np.float32)
    picture, controls = st.columns([3, 2])
    with controls:
        overlay = st.toggle("Attribution heatmap overlay", value=True, key=f"overlay_{name}",
                            disabled=entry.get("heatmap") is None)  # fmt: skip
        level = st.slider("Level (window centre)", 0.0, 1.0, 0.5, 0.01, key=f"level_{name}")
        width = st.slider("Window width", 0.05, 1.0, 1.0, 0.01, key=f"width_{name}")
        opacity = st.slider("Overlay opacity", 0.1, 1.0, 0.6, 0.05, key=f"opacity_{name}", disabled=not overlay)
        geometry = entry.get("source_geometry") or {}
        st.caption(
            "The image as the model saw it (windowed at ingestion, resized and padded to "
            f"{image.shape[-1]}×{image.shape[-1]}"
            + (f"; source {geometry['rows']}×{geometry['cols']} pixels" if geometry.get("rows") else "")
            + "). The heatmap shows where hiding the image lowers the risk (occlusion sensitivity)."
        )
    heatmap = entry.get("heatmap") if overlay else None
    with picture:
        st.image(compose_image(image, level, width, heatmap, opacity), width=460,
                 caption=f"{name}" + (" with attribution overlay" if heatmap is not None else ""))  # fmt: skip
