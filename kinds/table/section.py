"""The dashboard section of a table modality: its top features by attribution."""

from __future__ import annotations

import streamlit as st
from clinfuse.dashboards.charts import PLOT_CONFIG, signed_bars
from clinfuse.platform.kinds import SectionData


def render_table_section(section: SectionData) -> None:
    top = section.entry.get("top")
    if not top:
        st.caption("No feature attributions for this modality.")
        return
    st.plotly_chart(signed_bars(top, f"{section.modality}: top features (SHAP)"), config=PLOT_CONFIG,
                    key=f"bars_{section.modality}")  # fmt: skip
