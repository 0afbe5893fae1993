"""Patient page: risk with interval and band, modality waterfall, fusion beside XGBoost, then one section per
configured modality, drawn by its kind (image with heatmap, features, EHR timeline, highlighted notes, ECG)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st
from clinfuse.dashboards import audit, cached, charts, data_source
from clinfuse.dashboards.cached import AppContext
from clinfuse.dashboards.page_cohort import PATIENT_KEY, VIEWED_KEY, ranked_table
from clinfuse.dashboards.tables import disagreement
from clinfuse.dashboards.users import User
from clinfuse.platform.kinds import kinds

PICKER_KEY = "patient_picker"
XGBOOST_CONSISTENCY = 0.02  # largest gap between the explained and the scored XGBoost risk


def _display_id(row) -> str:
    """The pseudonym, with the source id beside it where the site configured source ids (row: Series or tuple)."""
    source = getattr(row, "source_id", None)
    patient = str(row.patient_id)
    return f"{patient} ({source})" if isinstance(source, str) and source else patient


def _step(order: list[str], delta: int) -> None:
    current = st.session_state.get(PATIENT_KEY)
    position = order.index(current) if current in order else 0
    st.session_state[PATIENT_KEY] = order[min(len(order) - 1, max(0, position + delta))]


def _picked() -> None:
    st.session_state[PATIENT_KEY] = st.session_state[PICKER_KEY]


def render(context: AppContext, user: User) -> None:
    scores, table = ranked_table(context)
    order = table["patient_id"].tolist()
    if not order:
        st.info("The scores file holds no patients.")
        return
    patient = st.session_state.get(PATIENT_KEY)
    if patient not in order:
        patient = order[0]  # the highest-risk patient
        st.session_state[PATIENT_KEY] = patient
    st.session_state[PICKER_KEY] = patient
    row = table.iloc[order.index(patient)]
    labels = dict(
        zip(
            order,
            [f"#{r.rank} · {_display_id(r)} · {charts.percent(r.risk)} · {r.band}" for r in table.itertuples()],
            strict=True,
        )
    )

    top = st.columns([6, 1, 1])
    top[0].selectbox(
        "Patient (ranked by risk)", order, key=PICKER_KEY, format_func=labels.__getitem__, on_change=_picked
    )
    top[1].button("◀ Previous", on_click=_step, args=(order, -1), width="stretch", key="previous_patient")
    top[2].button("Next ▶", on_click=_step, args=(order, 1), width="stretch", key="next_patient")

    if st.session_state.get(VIEWED_KEY) != patient:  # audited before any of the patient's data is drawn
        context.audit.record(audit.VIEW_PATIENT, user.name, user.role, patient)
        st.session_state[VIEWED_KEY] = patient

    st.header(f"Patient {_display_id(row)}", anchor="patient-header")
    st.caption(
        f"rank {int(row['rank'])} of {len(order)} · model {scores.model_name} v{scores.model_version} · "
        f"scored {row.get('scored_at', scores.scored_at)}"
    )
    if row["error"]:
        st.error(f"This patient could not be scored: {row['error']}")
        return
    for warning in [w for w in str(row["warnings"]).split(";") if w.strip()]:
        st.warning(f"Scoring warning: {warning.strip()}")

    present = [m for m in scores.modalities if m in set(str(row["modalities_present"]).split("+"))]
    absent = [m for m in scores.modalities if m not in present]
    _risk_summary(context, row, present, absent)

    with st.spinner("Explaining this patient…"):
        explanation = cached.explanation(context, patient)

    contributions = data_source.contributions_from_table(scores, patient)
    if contributions is None:
        contributions = (explanation.probability_base, explanation.probability_values, explanation.absent)
    base, values, absent_from_values = contributions
    left, right = st.columns(2)
    with left:
        st.plotly_chart(
            charts.modality_waterfall(base, values, absent_from_values, float(row["risk"])),
            config=charts.PLOT_CONFIG,
            key="waterfall",
        )
        if absent_from_values:
            st.caption(
                f"Absent for this patient: {', '.join(absent_from_values)} — not measured, so no value "
                "(absent is not zero). The base risk is the model's risk with every modality masked."
            )
    with right:
        _fusion_vs_xgboost(context, row, explanation)

    for name, kind_name in scores.modalities.items():
        _modality_section(context, name, kind_name, patient, present, explanation)

    export = {
        "patient": patient,
        "model": {"name": scores.model_name, "version": scores.model_version},
        "risk": float(row["risk"]),
        "risk_interval": [_float(row.get("risk_lower")), _float(row.get("risk_upper"))],
        "band": row["band"],
        "risk_xgboost": _float(row.get("risk_xgboost")),
        "base_risk": base,
        "contributions": values,
        "absent": absent_from_values,
        "explanation": explanation.to_json(),
    }
    st.download_button(
        "Export this patient's explanation (JSON)",
        json.dumps(export, indent=1, default=_json_default),
        file_name=f"clinfuse_{patient}.json",
        mime="application/json",
        on_click=_audit_export,
        args=(context, user, patient),
        key="export_patient",
    )
    st.caption(f"End of the record of patient {patient}.")  # the last element: the page is complete
    position = order.index(patient)
    cached.prefetch(context, order[position + 1 : position + 2] + order[max(0, position - 1) : position])


def _float(value) -> float | None:
    return None if value is None or value != value else float(value)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return None
    return str(value)


def _audit_export(context: AppContext, user: User, patient: str) -> None:
    context.audit.record(audit.EXPORT, user.name, user.role, patient, what="patient_explanation_json")


def _risk_summary(context: AppContext, row: pd.Series, present: list[str], absent: list[str]) -> None:
    risk = float(row["risk"])
    columns = st.columns([1.3, 1, 1, 1.6])
    with columns[0]:
        st.metric("Calibrated risk (fusion)", charts.percent(risk))
        lower, upper = _float(row.get("risk_lower")), _float(row.get("risk_upper"))
        interval = f"95% interval {charts.percent(lower)}–{charts.percent(upper)}" if lower is not None else ""
        st.caption(f"probability {risk:.3f}; {interval}")
    with columns[1]:
        colour = {"low": "green", "intermediate": "orange", "high": "red"}.get(row["band"], "gray")
        st.markdown("**Risk band**")
        st.badge(str(row["band"]), color=colour)
    with columns[2]:
        st.metric("XGBoost baseline", charts.percent(_float(row.get("risk_xgboost"))))
    with columns[3]:
        st.markdown("**Modalities**")
        st.markdown(" ".join([f":green-badge[{m}]" for m in present] + [f":gray-badge[{m}: absent]" for m in absent]))


def _fusion_vs_xgboost(context: AppContext, row: pd.Series, explanation: data_source.Explanation) -> None:
    xgb = explanation.xgboost or {}
    scored_xgboost = _float(row.get("risk_xgboost"))
    explained_xgboost = _float(xgb.get("probability"))
    consistent = (
        scored_xgboost is not None
        and explained_xgboost is not None
        and abs(scored_xgboost - explained_xgboost) <= XGBOOST_CONSISTENCY
    )
    # XGBoost TreeSHAP values are shown only when they explain the XGBoost risk that was scored.
    xgb_values = {k: v for k, v in (xgb.get("logit_values") or {}).items() if k not in xgb.get("absent", [])}
    note = disagreement(
        float(row["risk"]),
        scored_xgboost if scored_xgboost is not None else float("nan"),
        context.settings.risk_bands,
        context.settings.disagreement_threshold,
        explanation.logit_values,
        xgb_values if consistent else None,
    )
    st.plotly_chart(
        charts.fusion_vs_xgboost(explanation.logit_values, xgb_values if consistent else {}, explanation.absent),
        config=charts.PLOT_CONFIG,
        key="fusion_vs_xgboost",
    )
    st.caption(
        "Fusion: exact modality Shapley values; XGBoost: TreeSHAP summed per modality; both on the "
        "calibrated logit." + (f" Absent: {', '.join(explanation.absent)}." if explanation.absent else "")
    )
    if xgb and not consistent:
        st.warning(
            f"The XGBoost explanation (risk {charts.percent(explained_xgboost)}) does not match the scored XGBoost "
            f"risk ({charts.percent(scored_xgboost)}); its per-modality values are withheld."
        )
    if note:
        st.warning(note)
    else:
        agreed = "band and direction" if consistent else "band"
        st.caption(f"Fusion model and XGBoost baseline agree on this patient's {agreed}.")


def _modality_section(context: AppContext, name: str, kind_name: str, patient: str, present: list[str],
                      explanation: data_source.Explanation) -> None:  # fmt: skip
    """The modality's own section, drawn by its kind; a generic one for a kind without one (or not installed)."""
    kind = kinds().get(kind_name)
    st.subheader(f"{name} · {kind.label if kind else kind_name}")
    if name not in present:
        st.info(f"{name}: absent for this patient — not available, so it contributes nothing (absent, not zero).")
        return
    entry = explanation.within.get(name, {"kind": kind_name, "top": [], "heatmap": None})
    section = cached.section_data(context, name, patient, entry)
    if section is None:
        st.info(f"{name}: no data in the feature cache for this patient.")
    elif kind is None or not kind.render_section(section):
        _generic_section(name, entry)


def _generic_section(name: str, entry: dict) -> None:
    """The contributions a kind reports, as signed bars (kinds without a section of their own)."""
    if not entry.get("top"):
        st.caption(f"{name}: no attributions to show for this modality.")
        return
    st.plotly_chart(charts.signed_bars(entry["top"], f"{name}: top contributions"), config=charts.PLOT_CONFIG,
                    key=f"bars_{name}")  # fmt: skip
