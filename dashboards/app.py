"""ClinFuse clinician dashboard: the Streamlit entry script (start it with `clinfuse dashboard --scores PATH`).

Nothing about patients is shown before sign-in (the server loads the scores and explains the first patients as it
starts, dashboard_server.py, so they are ready when a clinician signs in). The navigation holds only the pages the
user's role may open (clinician: cohort, patient; data scientist: also model), and each page checks the role again.
"""

from __future__ import annotations

import streamlit as st
from clinfuse.dashboards import login, page_cohort, page_model, page_patient
from clinfuse.dashboards.cached import AppContext
from clinfuse.dashboards.users import PAGES_BY_ROLE
from clinfuse.platform.errors import ClinFuseError


def main() -> None:
    # An emoji icon is drawn in the browser; a :material: one is fetched from fonts.gstatic.com, which the
    # Content-Security-Policy (dashboard_server.py) rightly blocks: no browser should call out to Google.
    st.set_page_config(page_title="ClinFuse", page_icon="🩺", layout="wide")
    try:
        context = AppContext.from_environment()
    except ClinFuseError as exc:
        st.error(f"The dashboard is misconfigured: {exc}")
        st.stop()
    user = login.current_user(context)
    if user is None:
        sign_in = st.Page(lambda: login.login_page(context), title="Sign in", url_path="login", default=True)
        st.navigation([sign_in], position="hidden").run()
        return

    pages: dict[str, st.Page] = {}

    def open_patient(patient: str) -> None:
        st.session_state[page_cohort.PATIENT_KEY] = patient
        st.switch_page(pages["patient"])

    def cohort() -> None:
        page_cohort.render(context, user, open_patient)

    def patient() -> None:
        page_patient.render(context, user)

    def model() -> None:
        page_model.render(context, user)

    available = {
        "cohort": st.Page(cohort, title="Cohort", icon=":material/groups:", url_path="cohort", default=True),
        "patient": st.Page(patient, title="Patient", icon=":material/person:", url_path="patient"),
        "model": st.Page(model, title="Model", icon=":material/analytics:", url_path="model"),
    }
    pages.update({name: available[name] for name in PAGES_BY_ROLE[user.role]})
    navigation = st.navigation(list(pages.values()))
    with st.sidebar:
        st.markdown(f"Signed in as **{user.name}**  \n{user.role.replace('_', ' ')}")
        st.button("Sign out", on_click=login.sign_out, args=(context,), key="sign_out")
        st.caption(f"Sessions end after {context.settings.idle_timeout_minutes:g} min without activity.")
        login.expiry_watch(context)
    try:
        navigation.run()
    except ClinFuseError as exc:
        st.error(str(exc))


main()
