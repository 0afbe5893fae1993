"""The Model page's clinical decision figures from the bundle's metrics.json, as pure functions (no streamlit):
operating points, calibration intercept and slope, calibration by group, and the decision curve."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from clinfuse.models.decision_metrics import ALERT_METRICS, format_estimate

MODELS = ("fusion", "xgboost")
ALERT_COLUMNS = dict(zip(ALERT_METRICS, ("sensitivity", "specificity", "PPV", "NPV", "alerts per 100"), strict=True))
CURVE_STYLES = {
    "treat_all": {"color": "#7f8c8d", "width": 1},
    "treat_none": {"color": "#000000", "width": 1, "dash": "dash"},
}


def operating_points_table(metrics: dict) -> pd.DataFrame:
    """One row per model and operating point, each rate with its 95% CI; empty for an older metrics.json."""
    rows = []
    for model in MODELS:
        for point in (metrics.get(model) or {}).get("operating_points", []):
            row = {"model": model, "rule": point["rule"], "threshold": f"{point['threshold']:.3f}"}
            for key, column in ALERT_COLUMNS.items():
                row[column] = format_estimate(point[key], point[f"{key}_ci"], 1 if key == "alerts_per_100" else 3)
            rows.append(row)
    return pd.DataFrame(rows)


def calibration_table(metrics: dict) -> pd.DataFrame:
    """Calibration intercept (ideal 0) and slope (ideal 1) with 95% CIs beside the ECE, per model."""
    rows = [
        {
            "model": model,
            "ECE": format_estimate(entry.get("ece"), None),
            "calibration intercept": format_estimate(entry["calibration_intercept"], entry["calibration_intercept_ci"]),
            "calibration slope": format_estimate(entry["calibration_slope"], entry["calibration_slope_ci"]),
        }
        for model in MODELS
        if "calibration_slope" in (entry := metrics.get(model) or {})
    ]
    return pd.DataFrame(rows)


def group_calibration_table(metrics: dict) -> pd.DataFrame:
    """Observed against mean predicted risk, intercept and slope ('too few: …' below the events rule) for each
    missingness pattern and subgroup of the fusion model."""
    rows = []
    for key, kind in (("by_missingness", "modalities present"), ("subgroups", "subgroup")):
        for name, entry in (metrics.get(key) or {}).items():
            if "observed_risk" not in entry:
                continue
            rows.append(
                {
                    "group": name,
                    "kind": kind,
                    "n": entry.get("n"),
                    "events": entry.get("positives"),
                    "observed risk": format_estimate(entry["observed_risk"], None),
                    "mean predicted risk": format_estimate(entry["mean_predicted_risk"], None),
                    "intercept": format_estimate(entry["calibration_intercept"], None),
                    "slope": entry.get("calibration_slope_note") or format_estimate(entry["calibration_slope"], None),
                }
            )
    return pd.DataFrame(rows)


def decision_curve_chart(metrics: dict) -> go.Figure | None:
    """Net benefit against the threshold risk for each model, treat-all and treat-none; None when absent."""
    curve = metrics.get("decision_curve")
    if not curve:
        return None
    thresholds = [100 * t for t in curve["thresholds"]]
    figure = go.Figure()
    for name, values in curve["net_benefit"].items():
        figure.add_trace(
            go.Scatter(
                x=thresholds,
                y=values,
                mode="lines",
                name=name.replace("_", " "),
                line=CURVE_STYLES.get(name, {"width": 3}),
                hovertemplate="threshold %{x:.0f}%: net benefit %{y:.3f}<extra>" + name.replace("_", " ") + "</extra>",
            )
        )
    best = max(max(values) for values in curve["net_benefit"].values())
    figure.update_layout(
        title="Decision curve (test split)",
        xaxis_title="threshold risk (%)",
        yaxis_title="net benefit",
        height=340,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    figure.update_yaxes(range=[-0.05, max(best, 0.05) * 1.1])
    return figure
