"""Model page (data scientists): version and aliases, metrics with CIs, calibration, subgroups, clinical decision
figures (operating points, calibration slope and intercept, decision curve), model card."""

from __future__ import annotations

import streamlit as st
from clinfuse.dashboards import cached, login, model_decision
from clinfuse.dashboards.cached import AppContext
from clinfuse.dashboards.page_cohort import VIEWED_KEY
from clinfuse.dashboards.tables import group_table, metrics_table, single_modality_table, targets_table
from clinfuse.dashboards.users import User


def render(context: AppContext, user: User) -> None:
    login.require_page(user, "model")
    st.session_state[VIEWED_KEY] = None
    scores = cached.scores(context)
    files = cached.model_files(context)
    st.title("Model")
    columns = st.columns(4)
    columns[0].metric("Registered model", scores.model_name)
    columns[1].metric("Version", scores.model_version)
    columns[2].metric("Aliases", ", ".join(scores.aliases) or "none")
    columns[3].metric("Modalities", len(scores.modalities))
    st.caption(
        f"Bundle {scores.model_dir} · modalities: "
        + ", ".join(f"{n} ({k})" for n, k in scores.modalities.items())
        + f" · scores {scores.path.name}"
    )

    metrics = files["metrics"]
    if not metrics:
        st.warning("The model bundle holds no metrics.json (the model was not evaluated).")
    else:
        st.subheader("Test-split performance")
        st.caption(
            f"n = {metrics.get('n_test')} patients, prevalence {metrics.get('prevalence', float('nan')):.3f}; "
            f"{metrics.get('bootstrap_resamples', '')} bootstrap resamples for the 95% CIs; "
            f"{metrics.get('calibration', '')}"
        )
        st.dataframe(metrics_table(metrics), hide_index=True)
        left, right = st.columns([3, 2])
        with left:
            st.markdown("**Single modality** (same fusion model, other modalities masked)")
            st.dataframe(single_modality_table(metrics), hide_index=True)
            st.markdown("**By missingness pattern**")
            st.dataframe(group_table(metrics.get("by_missingness"), "modalities present"), hide_index=True)
            st.markdown("**Subgroups**")
            st.dataframe(group_table(metrics.get("subgroups"), "subgroup"), hide_index=True)
            targets = targets_table(metrics)
            if len(targets):
                st.markdown("**Targets**")
                st.dataframe(targets, hide_index=True)
        with right:
            st.markdown("**Calibration**")
            if files["calibration_png"]:
                st.image(files["calibration_png"], caption="Reliability diagram on the test split")
            else:
                st.caption("No calibration plot in the bundle.")
        _clinical_decision_figures(metrics)
    card = files["card"]
    with st.expander("Model card", expanded=True):
        st.markdown(card if card else "The model bundle holds no model card.")


def _clinical_decision_figures(metrics: dict) -> None:
    """Operating points, calibration intercept and slope (overall and by group) and the decision curve."""
    points = model_decision.operating_points_table(metrics)
    if not len(points):
        st.caption("This model's metrics.json predates operating points and decision curves; evaluate it again.")
        return
    st.subheader("Clinical decision figures")
    st.caption(
        "An alert is raised at a calibrated risk at or above the threshold; thresholds for a target sensitivity "
        f"were chosen on the {metrics.get('operating_thresholds_from', 'validation')} split and applied to test. "
        "95% bootstrap CIs."
    )
    st.markdown("**Operating points** (test split)")
    st.dataframe(points, hide_index=True)
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Calibration intercept and slope** (ideal 0 and 1)")
        st.dataframe(model_decision.calibration_table(metrics), hide_index=True)
        st.markdown("**Calibration by missingness pattern and subgroup** (fusion)")
        st.dataframe(model_decision.group_calibration_table(metrics), hide_index=True)
    with right:
        curve = model_decision.decision_curve_chart(metrics)
        if curve is not None:
            st.plotly_chart(curve, key="decision_curve")
