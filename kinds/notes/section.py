"""The patient page's notes section: the notes the model read, each token shaded by its attribution (red raises
the risk, blue lowers it, stronger colour for a larger |value|), and the top tokens as bars.

Every piece of note text goes through html.escape before it reaches the page: notes are free text typed by
people, and may hold anything, markup included.
"""

from __future__ import annotations

import html

import pandas as pd
from clinfuse.platform.kinds.base import SectionData

RAISES_RGB, LOWERS_RGB = (192, 57, 43), (36, 113, 163)  # clinfuse.dashboards.charts.RAISES / LOWERS
MAX_ALPHA = 0.85


def render(section: SectionData) -> bool:
    import streamlit as st
    from clinfuse.dashboards import charts

    notes, spans = patient_texts(section)
    values = [float(value) for _, value in section.entry.get("detail", {}).get("tokens", [])]
    text, bars = st.columns([3, 2])
    with text:
        if notes.empty:
            st.caption("No note text in the feature cache for this patient.")
        for note in notes.itertuples():
            note_spans = spans[spans["note"] == note.note]
            st.markdown(f"**{html.escape(str(note.note_type))}** · {html.escape(str(note.charttime))}")
            st.html(highlighted(note.text, note_spans, values))
        st.caption("The notes as the model read them, newest first (text past its token limit is left out). Red "
                   "words pushed the risk up, blue ones down (integrated gradients over the word embeddings).")
    with bars:
        if section.entry.get("top"):
            st.plotly_chart(charts.signed_bars(section.entry["top"], f"{section.modality}: contributing words"),
                            config=charts.PLOT_CONFIG, key=f"bars_{section.modality}")  # fmt: skip
    return True


def patient_texts(section: SectionData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The patient's notes (newest first) and token spans, read for this patient only (parquet filters)."""
    folder = section.cache.modality_dir(section.modality)
    wanted = [("patient", "==", section.patient)]
    notes = pd.read_parquet(folder / "notes.parquet", filters=wanted).sort_values("note")
    spans = pd.read_parquet(folder / "token_spans.parquet", filters=wanted).sort_values("position")
    return notes, spans


def highlighted(text: str, spans: pd.DataFrame, values: list[float]) -> str:
    """The note's text up to its last read token as HTML, each token in a <span> shaded by its value."""
    peak = max((abs(v) for v in values), default=0.0) or 1.0
    parts, cursor = [], 0
    for position, start, end in spans[["position", "start", "end"]].itertuples(index=False):
        if start < 0 or start < cursor:  # a note-type marker, or a token overlapping the previous one
            continue
        parts.append(html.escape(text[cursor:start]))
        value = values[position] if position < len(values) else 0.0
        red, green, blue = RAISES_RGB if value > 0 else LOWERS_RGB
        alpha = round(MAX_ALPHA * abs(value) / peak, 3)
        parts.append(f'<span title="{value:+.4f}" style="background: rgba({red}, {green}, {blue}, {alpha}); '
                     f'border-radius: 3px">{html.escape(text[start:end])}</span>')  # fmt: skip
        cursor = end
    ending = " …" if cursor < len(text.rstrip()) else ""
    return ('<div style="white-space: pre-wrap; font-family: monospace; font-size: 0.85em; line-height: 1.5">'
            + "".join(parts) + ending + "</div>")  # fmt: skip
