"""The patient page's ECG section: the leads as plotly traces (two columns of six, as printed ECGs are read),
with the attribution as coloured markers on the trace where it is strong (red: raised the risk, blue: lowered
it), and the top lead x time windows below."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from clinfuse.dashboards.charts import PLOT_CONFIG
from clinfuse.platform.kinds.base import SectionData
from plotly.subplots import make_subplots

MARK_FROM = 0.25  # |attribution| (scaled to [-1, 1]) from which a sample is marked
SMOOTH_S = 0.04  # attribution averaged over 40 ms before marking, so markers follow waves, not single samples


def ecg_figure(signal: np.ndarray, leads: list[str], rate: int, heatmap: np.ndarray | None) -> go.Figure:
    rows = (len(leads) + 1) // 2
    fig = make_subplots(rows=rows, cols=2, shared_xaxes=True, vertical_spacing=0.02, horizontal_spacing=0.05,
                        subplot_titles=leads)  # fmt: skip
    seconds = np.arange(signal.shape[1]) / rate
    heat = _smoothed(heatmap, rate) if heatmap is not None and heatmap.shape == signal.shape else None
    for j, lead in enumerate(leads):
        row, col = j % rows + 1, j // rows + 1
        fig.add_trace(go.Scatter(x=seconds, y=signal[j], mode="lines", line={"color": "#333", "width": 1},
                                 name=lead, hovertemplate="%{x:.2f} s, %{y:.2f} mV"), row=row, col=col)  # fmt: skip
        if heat is not None:
            marked = np.flatnonzero(np.abs(heat[j]) >= MARK_FROM)
            fig.add_trace(go.Scatter(
                x=seconds[marked], y=signal[j, marked], mode="markers", name=f"{lead} attribution",
                marker={"color": heat[j, marked], "colorscale": "RdBu_r", "cmin": -1, "cmax": 1, "size": 5},
                customdata=heat[j, marked], hovertemplate="%{x:.2f} s, attribution %{customdata:.2f}",
            ), row=row, col=col)  # fmt: skip
    fig.update_layout(height=110 * rows + 60, showlegend=False, margin={"l": 30, "r": 10, "t": 30, "b": 30})
    fig.update_yaxes(title_text=None, tickfont={"size": 9})
    fig.update_xaxes(title_text="s", row=rows)
    return fig


def _smoothed(heatmap: np.ndarray, rate: int) -> np.ndarray:
    width = max(1, round(SMOOTH_S * rate))
    kernel = np.ones(width) / width
    smooth = np.stack([np.convolve(lead, kernel, mode="same") for lead in np.asarray(heatmap, np.float64)])
    peak = np.abs(smooth).max()
    return smooth / peak if peak > 0 else smooth


def render_ecg_section(section: SectionData) -> bool:
    import streamlit as st

    settings = section.cache.json(section.modality, "alignment")
    signal = np.asarray(section.cache.array(section.modality, "signals")[section.row], np.float32)
    entry = section.entry
    heatmap = entry.get("heatmap")
    heatmap = np.asarray(heatmap, np.float32) if heatmap is not None and not isinstance(heatmap, str) else None
    fig = ecg_figure(signal, list(settings["leads"]), int(settings["sampling_rate"]), heatmap)
    st.plotly_chart(fig, config=PLOT_CONFIG, key=f"ecg_{section.modality}")
    top = entry.get("top") or []
    if top:
        items = ", ".join(f"{html.escape(str(t['name']))} ({t['value']:+.3f})" for t in top[:5])
        st.caption(f"Lead x time windows with the largest integrated-gradient attribution: {items}")
    return True
