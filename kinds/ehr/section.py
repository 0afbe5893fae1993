"""The dashboard section of an EHR modality: the timeline of events before the index time, with the codes and
labs that moved the risk most."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from clinfuse.dashboards.charts import PLOT_CONFIG, ehr_timeline, signed_bars
from clinfuse.kinds.ehr.ingest import EVENTS_FILE
from clinfuse.platform.cache.feature_cache import MANIFEST_FILE
from clinfuse.platform.kinds import SectionData

EVENT_COLUMNS = ["days_before_index", "kind", "code", "value", "unit", "text"]


@st.cache_resource(show_spinner=False, max_entries=4)
def _events_by_patient(cache_path: str, modality: str, manifest_mtime: float) -> dict[str, pd.DataFrame]:
    """Events grouped per patient once per cache version (one parquet file holds every patient's timeline)."""
    from clinfuse.platform.cache import FeatureCache

    table = FeatureCache(cache_path).table(modality, EVENTS_FILE.removesuffix(".parquet"))
    return {str(p): frame.drop(columns="patient").reset_index(drop=True)
            for p, frame in table.groupby("patient", sort=False)}  # fmt: skip


def render_ehr_section(section: SectionData) -> None:
    cache = section.cache
    mtime = (cache.path / MANIFEST_FILE).stat().st_mtime
    events = _events_by_patient(str(cache.path), section.modality, mtime).get(
        section.patient, pd.DataFrame(columns=EVENT_COLUMNS)
    )
    top = section.entry.get("top", [])
    timeline, bars = st.columns([3, 2])
    with timeline:
        if len(events):
            st.plotly_chart(ehr_timeline(events, top), config=PLOT_CONFIG, key=f"timeline_{section.modality}")
            st.caption(f"{len(events)} events before the index time; coloured markers are the codes and labs "
                       "that moved the risk most.")  # fmt: skip
        else:
            st.caption("No events before the index time.")
    with bars:
        if top:
            st.plotly_chart(signed_bars(top, f"{section.modality}: contributing codes and labs"), config=PLOT_CONFIG,
                            key=f"bars_{section.modality}")  # fmt: skip
