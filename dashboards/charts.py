"""Figures and images of the dashboard, as pure functions of plain data (no streamlit, easy to test).

Colours: red raises the risk, blue lowers it (the convention of SHAP plots); grey is context. Risk is on the
calibrated probability scale and shown in percent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

RAISES = "#c0392b"
LOWERS = "#2471a3"
CONTEXT = "#9aa3ab"
BAND_COLOURS = {"low": "#27ae60", "intermediate": "#e67e22", "high": "#c0392b", "not scored": "#7f8c8d"}
EHR_KIND_LABELS = {
    "diagnosis": "Diagnoses",
    "procedure": "Procedures",
    "drug": "Drugs",
    "lab": "Labs",
    "vital": "Vitals",
}
# No template: Streamlit's theme applies (and plotly templates are slow to build).
_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}}


PLOT_CONFIG = {"displaylogo": False}  # plotly charts without the vendor logo


def percent(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.{digits}f}%"


def risk_histogram(risks: pd.Series, bands: pd.Series, intermediate: float, high: float) -> go.Figure:
    """Distribution of calibrated risk, stacked by band, with the band thresholds marked."""
    figure = go.Figure()
    for band in ("low", "intermediate", "high"):
        values = 100 * risks[bands == band].dropna()
        figure.add_trace(
            go.Histogram(
                x=values,
                name=band,
                marker_color=BAND_COLOURS[band],
                xbins={"size": 2.5},
                hovertemplate="%{x}%: %{y} patients<extra>" + band + "</extra>",
            )
        )
    for threshold in (intermediate, high):
        figure.add_vline(
            x=100 * threshold,
            line_dash="dash",
            line_color="#555",
            annotation_text=f"{100 * threshold:g}%",
            annotation_position="top",
        )
    figure.update_layout(
        barmode="stack",
        title="Risk distribution",
        xaxis_title="calibrated risk (%)",
        yaxis_title="patients",
        height=300,
        legend_title_text="band",
        **_LAYOUT,
    )
    figure.update_xaxes(range=[0, 100])
    return figure


def modality_waterfall(base: float, values: dict[str, float], absent: list[str], risk: float) -> go.Figure:
    """From the base risk (every modality masked) through each present modality's exact Shapley value to the
    patient's risk. Absent modalities get a labelled slot without a bar: absent is not zero."""
    names = list(values)
    x = ["base risk", *names, "patient risk"]
    y = [100 * base, *[100 * values[n] for n in names], 100 * risk]
    text = [percent(base), *[f"{100 * values[n]:+.1f} pts" for n in names], percent(risk)]
    figure = go.Figure(
        go.Waterfall(
            x=x,
            y=y,
            measure=["absolute", *["relative"] * len(names), "total"],
            text=text,
            textposition="outside",
            increasing={"marker": {"color": RAISES}},
            decreasing={"marker": {"color": LOWERS}},
            totals={"marker": {"color": "#34495e"}},
            connector={"line": {"color": "#aaa", "dash": "dot"}},
            hovertemplate="%{x}: %{text}<extra></extra>",
            name="fusion",
            showlegend=False,
        )
    )
    categories = list(x)
    if absent:
        labels = [f"{name} (absent)" for name in absent]
        categories += labels
        figure.add_trace(
            go.Scatter(
                x=labels,
                y=[100 * base / 2] * len(absent),
                mode="text",
                text=["absent"] * len(absent),
                textfont={"color": "#7f8c8d", "size": 12},
                hovertemplate="%{x}: no data, no contribution<extra></extra>",
                showlegend=False,
            )
        )
    running = np.cumsum(y[:-1])
    top = min(100.0, max(running.max(), 100 * risk) * 1.15 + 3) + 10  # room for the labels above the bars
    figure.update_layout(
        title="How each modality moves the risk (exact Shapley values)", yaxis_title="risk (%)", height=340, **_LAYOUT
    )
    figure.update_yaxes(range=[min(0.0, running.min() - 2), top], tickvals=list(range(0, 101, 20)))
    figure.update_xaxes(categoryorder="array", categoryarray=categories)
    return figure


def signed_bars(top: list[dict], title: str, limit: int = 15, label_key: str = "name") -> go.Figure:
    """Top features by |attribution| as horizontal bars, largest at the top; red raises, blue lowers risk."""
    rows = sorted(top, key=lambda t: -abs(t["value"]))[:limit][::-1]
    labels = [_label(t, label_key) for t in rows]
    values = [t["value"] for t in rows]
    hover = [_hover(t) for t in rows]
    figure = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=[RAISES if v > 0 else LOWERS for v in values],
            customdata=hover,
            hovertemplate="%{y}: %{x:+.3f}<br>%{customdata}<extra></extra>",
        )
    )
    figure.update_layout(
        title=title, xaxis_title="attribution (positive raises risk)", height=max(220, 28 * len(rows) + 80), **_LAYOUT
    )
    figure.update_yaxes(automargin=True)
    return figure


def _label(entry: dict, key: str) -> str:
    text = entry.get("text")
    name = str(entry.get(key, ""))
    if text and text != name:
        short = text if len(text) <= 40 else text[:38] + "…"
        return f"{short} ({name})"
    return name


def _hover(entry: dict) -> str:
    parts = []
    if entry.get("input") is not None:
        parts.append(f"value (z-score): {entry['input']:.2f}")
    if entry.get("kind"):
        parts.append(str(entry["kind"]))
    return " · ".join(parts)


def ehr_timeline(events: pd.DataFrame, top: list[dict]) -> go.Figure:
    """Events before the index time on a day axis (index = 0); codes and labs that drove the risk are coloured
    by the sign of their attribution and enlarged, the rest are grey context."""
    attribution = {t["name"]: t["value"] for t in top}
    frame = events.copy()
    frame["day"] = -frame["days_before_index"].astype(float)
    frame["lane"] = frame["kind"].map(EHR_KIND_LABELS).fillna(frame["kind"])
    frame["weight"] = frame["code"].map(attribution)
    text = frame["text"].fillna("").astype(str)
    value = frame["value"].map(lambda v: "" if v != v or v is None else f" = {v:g}") + " " + frame["unit"].fillna("")
    frame["hover"] = frame["code"].astype(str) + " " + text + value.str.rstrip()
    figure = go.Figure()
    context = frame[frame["weight"].isna()]
    figure.add_trace(
        go.Scatter(
            x=context["day"],
            y=context["lane"],
            mode="markers",
            name="other events",
            marker={"color": CONTEXT, "size": 6, "opacity": 0.5},
            customdata=context["hover"],
            hovertemplate="day %{x:.0f}: %{customdata}<extra></extra>",
        )
    )
    for sign, colour, label in ((1, RAISES, "raises risk"), (-1, LOWERS, "lowers risk")):
        chosen = frame[frame["weight"].notna() & (np.sign(frame["weight"]) == sign)]
        if chosen.empty:
            continue
        size = 9 + 14 * chosen["weight"].abs() / max(1e-9, frame["weight"].abs().max())
        figure.add_trace(
            go.Scatter(
                x=chosen["day"],
                y=chosen["lane"],
                mode="markers",
                name=f"contributing: {label}",
                marker={"color": colour, "size": size, "line": {"color": "white", "width": 1}},
                customdata=np.stack([chosen["hover"], chosen["weight"].map(lambda w: f"{w:+.3f}")], axis=1),
                hovertemplate="day %{x:.0f}: %{customdata[0]}<br>attribution %{customdata[1]}<extra></extra>",
            )
        )
    figure.add_vline(x=0, line_color="#34495e", annotation_text="index time", annotation_position="top left")
    figure.update_layout(
        title="EHR before the index time",
        xaxis_title="days relative to the index time",
        height=300,
        legend={"orientation": "h", "y": -0.3},
        **_LAYOUT,
    )
    return figure


def fusion_vs_xgboost(fusion: dict[str, float], xgboost: dict[str, float], absent: list[str]) -> go.Figure:
    """Per-modality contributions of both models on the calibrated logit (fusion: exact modality Shapley;
    XGBoost: TreeSHAP summed per modality, left out when empty). Absent modalities are left out."""
    names = [n for n in fusion if n not in absent]
    figure = go.Figure()
    figure.add_trace(go.Bar(x=names, y=[fusion[n] for n in names], name="fusion", marker_color="#34495e"))
    if xgboost:
        values = [xgboost.get(n, np.nan) for n in names]
        figure.add_trace(go.Bar(x=names, y=values, name="XGBoost", marker_color="#95a5a6"))
    figure.update_layout(
        title="Fusion vs XGBoost, per modality",
        barmode="group",
        height=340,
        yaxis_title="contribution (calibrated logit)",
        legend={"orientation": "h", "y": -0.15},
        **_LAYOUT,
    )
    return figure


def window_level(image: np.ndarray, level: float, width: float) -> np.ndarray:
    """Window/level on the preprocessed [0, 1] intensities: values from level - width/2 to level + width/2 span
    black to white."""
    low = level - width / 2
    return np.clip((image - low) / max(width, 1e-6), 0.0, 1.0)


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """Red (weak) to yellow (strong) for values in [0, 1], shape (..., 3); never white, so it shows on bone."""
    return np.stack([np.ones_like(heat), np.clip(heat, 0, 1), np.zeros_like(heat)], axis=-1)


def compose_image(
    image: np.ndarray,
    level: float,
    width: float,
    heatmap: np.ndarray | None = None,
    opacity: float = 0.5,
    scale: int = 4,
    peak: float | None = None,
) -> np.ndarray:
    """RGB uint8 of the windowed image, optionally blended with the attribution heatmap (positive part,
    normalised to `peak`, by default its 99th percentile; weak attributions stay transparent). A slice of a
    volume passes the whole volume's peak, so a slice that barely mattered is not painted as hot as the hottest."""
    grey = window_level(np.asarray(image, np.float32), level, width)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    if heatmap is not None:
        heat = np.clip(np.asarray(heatmap, np.float32), 0, None)
        if peak is None:
            peak = float(np.percentile(heat, 99)) if heat.size else 0.0
        if peak > 0:
            heat = np.clip(heat / peak, 0, 1)
            alpha = (opacity * heat)[..., None]
            rgb = (1 - alpha) * rgb + alpha * heat_colours(heat)
    out = (255 * rgb).round().astype(np.uint8)
    return np.kron(out, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else out
