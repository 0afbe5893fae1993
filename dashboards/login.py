"""Sign-in gate, sessions and roles of the Streamlit app.

The signed-in user lives in Streamlit's server-side session state only (no cookie, no token in the browser):
closing or reloading the tab ends the session. A session ends after `idle_timeout_minutes` without interaction
and after `session_max_hours` in any case; a background fragment checks every 30 s and clears the screen when
the time is up. Wrong passwords count per user name and client address, and per client address (LoginLimiter),
and lock out exponentially; the lock check and the failure count are one atomic step taken before bcrypt runs.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta

import streamlit as st
from clinfuse.dashboards import audit
from clinfuse.dashboards.cached import AppContext
from clinfuse.dashboards.users import User, client_id

USER_KEY = "auth_user"
ROLE_KEY = "auth_role"
STARTED_KEY = "auth_started"
ACTIVITY_KEY = "auth_activity"
NOTICE_KEY = "auth_notice"
EXPIRY_CHECK_S = 30


def _expired_reason(context: AppContext, now: float) -> str | None:
    state = st.session_state
    settings = context.settings
    if now - state.get(ACTIVITY_KEY, 0) > 60 * settings.idle_timeout_minutes:
        return f"idle for more than {settings.idle_timeout_minutes:g} minutes"
    if now - state.get(STARTED_KEY, 0) > 3600 * settings.session_max_hours:
        return f"signed in for more than {settings.session_max_hours:g} hours"
    return None


def _clear_session() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def current_user(context: AppContext) -> User | None:
    """The signed-in user, or None (session absent, expired, or the user was removed / changed role)."""
    state = st.session_state
    name, role = state.get(USER_KEY), state.get(ROLE_KEY)
    if not name:
        return None
    now = time.time()
    reason = _expired_reason(context, now)
    if reason is None and not any(u.name == name and u.role == role for u in context.users.users()):
        reason = "the account was removed or its role changed"
    if reason is not None:
        context.audit.record(audit.SESSION_EXPIRED, name, role, reason=reason)
        _clear_session()
        state[NOTICE_KEY] = f"Your session ended ({reason}). Please sign in again."
        return None
    state[ACTIVITY_KEY] = now
    return User(name, role)


def login_page(context: AppContext) -> None:
    st.title("ClinFuse")
    st.caption("Multimodal clinical risk, explained per modality. Sign in to continue.")
    if notice := st.session_state.pop(NOTICE_KEY, None):
        st.info(notice)
    if not context.users.exists():
        st.error("No dashboard users are configured. An administrator creates them with `clinfuse users add`.")
        return
    with st.form("login", clear_on_submit=True):
        name = st.text_input("User name", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        _attempt(context, name.strip(), password)


def client_address() -> str:
    """The signing-in client's address as the limiter counts it. Uvicorn takes it from X-Forwarded-For only when
    the connection comes from a proxy named in FORWARDED_ALLOW_IPS (default: this machine), so a client cannot
    choose its own address (docs/dashboard.md)."""
    address = st.context.ip_address
    return client_id(address if isinstance(address, str) else None)  # AppTest's mock runtime reports a mock


def _attempt(context: AppContext, name: str, password: str) -> None:
    if not name or not password:
        st.error("Enter your user name and password.")
        return
    known = {u.name: u.role for u in context.users.users()}
    logged_name = name if name in known else None  # never log what may be a password typed as a name
    client = client_address()
    attempt = context.limiter.attempt(name, client)  # refused, or counted as a failure before bcrypt runs
    if attempt.refused_s > 0:
        context.audit.record(audit.LOGIN_LOCKED, logged_name, known.get(name), client=client)
        st.error(f"Too many wrong passwords. Try again in {math.ceil(attempt.refused_s)} s.")
        return
    user = context.users.verify(name, password)
    if user is None:
        lockout = attempt.lockout_s
        context.audit.record(audit.LOGIN_FAILED, logged_name, known.get(name), lockout_s=round(lockout), client=client)
        message = "Wrong user name or password."
        if lockout:
            message += f" Sign-in from this computer is locked for {math.ceil(lockout)} s."
        st.error(message)
        return
    context.limiter.success(name, client)
    _clear_session()
    now = time.time()
    st.session_state.update({USER_KEY: user.name, ROLE_KEY: user.role, STARTED_KEY: now, ACTIVITY_KEY: now})
    context.audit.record(audit.LOGIN, user.name, user.role, client=client)
    st.rerun()


def sign_out(context: AppContext) -> None:
    """Button callback: audit, forget everything of the session, show the sign-in page."""
    context.audit.record(audit.LOGOUT, st.session_state.get(USER_KEY), st.session_state.get(ROLE_KEY))
    _clear_session()
    st.session_state[NOTICE_KEY] = "You have signed out."


def expiry_watch(context: AppContext) -> None:
    """Re-checks the session every EXPIRY_CHECK_S seconds without counting as activity; reruns the app (which
    then shows the sign-in page) once it has expired."""

    @st.fragment(run_every=timedelta(seconds=EXPIRY_CHECK_S))
    def _watch() -> None:
        if st.session_state.get(USER_KEY) and _expired_reason(context, time.time()):
            st.rerun(scope="app")

    _watch()


def require_page(user: User, page: str) -> None:
    """Defence in depth: every page checks the role itself, beside the navigation that hides it."""
    if not user.may_open(page):
        st.error(f"Your role ({user.role}) does not give access to the {page} page.")
        st.stop()
