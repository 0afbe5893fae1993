"""The dashboard section of an EHR modality: the timeline of events before the index time, with the codes and
labs that moved the risk most."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from clinfuse.dashboards.charts import PLOT_CONFIG, ehr_timeline, signed_bars
from clinfuse.kinds.ehr.ingest import EVENTS_FILE
from clinfuse.platform.cache.feature_cache import MANIFEST_FILE, FeatureCache
from clinfuse.platform.kinds import SectionData

EVENT_COLUMNS = ["days_before_index", "kind", "code", "value", "unit", "text"]


@st.cache_resource(show_spinner=False, max_entries=4)
def _events_by_patient(
    cache_path: str, modality: str, manifest_mtime: float
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every patient's events and each patient's row positions, once per cache version (one parquet file holds
    every timeline): positions, not one frame per patient, so the first page does not wait for the whole split."""
    from clinfuse.platform.cache import FeatureCache

    table = FeatureCache(cache_path).table(modality, EVENTS_FILE.removesuffix(".parquet"))
    rows = table.groupby("patient", sort=False).indices
    return table.drop(columns="patient"), {str(patient): positions for patient, positions in rows.items()}


def events_of_every_patient(cache: FeatureCache, modality: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The modality's events and each patient's row positions in them (read once per cache version)."""
    return _events_by_patient(str(cache.path), modality, (cache.path / MANIFEST_FILE).stat().st_mtime)


def render_ehr_section(section: SectionData) -> None:
    table, rows = events_of_every_patient(section.cache, section.modality)
    positions = rows.get(section.patient)
    events = (table.iloc[positions].reset_index(drop=True) if positions is not None
              else pd.DataFrame(columns=EVENT_COLUMNS))  # fmt: skip
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
