"""Cohort page: patients ranked by calibrated risk, filters, risk distribution; a click opens the patient."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from clinfuse.dashboards import audit, cached, charts
from clinfuse.dashboards.cached import AppContext
from clinfuse.dashboards.tables import CohortFilter, cohort_csv, cohort_display, missing_list, with_bands
from clinfuse.dashboards.users import User

PATIENT_KEY = "patient"  # the patient the patient page shows (pseudonym)
VIEWED_KEY = "viewed_patient"  # the patient whose view was last audited; reset on other pages
TABLE_GENERATION_KEY = "cohort_table_generation"
SHOWN_KEY = "cohort_table_patients"  # the patients of the table as last drawn, in its row order


def ranked_table(context: AppContext):
    """The score table with bands and (when configured) source ids, ranked by risk."""
    scores = cached.scores(context)
    table = with_bands(scores.table, context.settings.risk_bands)
    ids = cached.source_ids(context)
    if ids:
        table["source_id"] = table["patient_id"].map(ids).fillna("")
    return scores, table


def render(context: AppContext, user: User, open_patient: Callable[[str], None]) -> None:
    st.session_state[VIEWED_KEY] = None
    clicked = _clicked_patient()
    if clicked is not None:  # open it at once: drawing the cohort page again first would only delay the patient
        open_patient(clicked)
    scores, table = ranked_table(context)
    # Done at server start (cached.warm_up); here for scores replaced since, or a server started without it.
    cached.prefetch(context, scores.highest_risk(cached.WARM_PATIENTS))
    names = list(scores.modalities)
    bands = context.settings.risk_bands

    st.title("Cohort")
    aliases = f" ({', '.join(scores.aliases)})" if scores.aliases else ""
    st.caption(
        f"Model {scores.model_name} version {scores.model_version}{aliases} · scored {scores.scored_at} · "
        f"bands: low < {bands.intermediate:.0%} ≤ intermediate < {bands.high:.0%} ≤ high"
    )

    with st.container(border=True):
        columns = st.columns([2, 2, 1.4, 2, 2])
        chosen_bands = columns[0].multiselect("Risk band", ["high", "intermediate", "low"], key="filter_band")
        missing = columns[1].multiselect(
            "Missing modality", names, key="filter_missing", help="patients missing any of the chosen modalities"
        )
        sexes: list[str] = []
        if "sex" in table:
            options = sorted(table["sex"].fillna("unknown").astype(str).unique())
            sexes = columns[2].multiselect("Sex", options, key="filter_sex")
        age_range = None
        if "age" in table and table["age"].notna().any():
            low, high = int(table["age"].min()), int(table["age"].max())
            if low < high:
                age_range = columns[3].slider("Age", low, high, (low, high), key="filter_age")
        search = columns[4].text_input("Find patient", key="filter_search", placeholder="pseudonym")
    chosen = CohortFilter(tuple(chosen_bands), tuple(missing), tuple(sexes), age_range, search)
    shown = chosen.apply(table, names)
    scored = shown[shown["risk"].notna()]

    metrics = st.columns(5)
    metrics[0].metric("Patients shown", f"{len(shown)} of {len(table)}")
    for column, band in zip(metrics[1:4], ("high", "intermediate", "low"), strict=True):
        column.metric(f"{band.capitalize()} risk", int((shown["band"] == band).sum()))
    metrics[4].metric("Not scored", int(shown["risk"].isna().sum()))

    left, right = st.columns([3, 2])
    with right:
        st.plotly_chart(
            charts.risk_histogram(scored["risk"], scored["band"], bands.intermediate, bands.high),
            config={"displaylogo": False},
            key="risk_histogram",
        )
        incomplete = scored["modalities_present"].map(lambda v: bool(missing_list(v, names))).sum()
        st.caption(
            f"{incomplete} of {len(scored)} shown patients miss at least one modality; their risk uses "
            "the modalities they have."
        )
    with left:
        st.markdown("**Patients by risk** — click a row to open the patient")
        display = cohort_display(shown, names)
        generation = st.session_state.setdefault(TABLE_GENERATION_KEY, 0)
        key = f"cohort_table_{generation}"
        st.dataframe(
            display,
            key=key,
            hide_index=True,
            on_select="rerun",
            selection_mode="single-row",
            height=420,
            column_config={
                "risk %": st.column_config.ProgressColumn("risk", format="%.1f%%", min_value=0, max_value=100),
                "XGBoost %": st.column_config.NumberColumn("XGBoost", format="%.1f%%"),
                "rank": st.column_config.NumberColumn("#", width="small"),
            },
        )
        st.session_state[SHOWN_KEY] = display["patient"].astype(str).tolist()
        export = cohort_csv(display)
        st.download_button(
            "Export shown patients (CSV)",
            export,
            file_name="clinfuse_cohort.csv",
            mime="text/csv",
            on_click=_audit_export,
            args=(context, user, len(display)),
            key="export_cohort",
        )

    errors = table[table["error"] != ""]
    if len(errors):
        with st.expander(f"{len(errors)} patient(s) could not be scored"):
            st.dataframe(errors[["patient_id", "error"]], hide_index=True)


def _clicked_patient() -> str | None:
    """The patient whose row was clicked in the table as last drawn (its selection arrives with this rerun, before
    the table is drawn again); None without a click. The next table is a fresh one, with no row selected."""
    generation = st.session_state.setdefault(TABLE_GENERATION_KEY, 0)
    selection = st.session_state.get(f"cohort_table_{generation}")
    rows = selection["selection"]["rows"] if selection else []
    shown = st.session_state.get(SHOWN_KEY, [])
    if not rows or rows[0] >= len(shown):
        return None
    st.session_state[TABLE_GENERATION_KEY] = generation + 1
    return shown[rows[0]]


def _audit_export(context: AppContext, user: User, n_patients: int) -> None:
    context.audit.record(audit.EXPORT, user.name, user.role, None, what="cohort_csv", n_patients=n_patients)
