"""The ASGI app that `clinfuse dashboard` serves: the Streamlit script `app.py` inside `st.App`, with a middleware
that adds security headers to every HTTP response.

Streamlit has no option for response headers; `st.App(middleware=...)` is its supported way to add ASGI
middleware, and `streamlit run` serves a file holding `app = st.App(...)` as that app (with every `--server.*`
flag the command line passes). The headers:

- Content-Security-Policy: scripts only from the server (plus the one inline script of Streamlit's index.html,
  allowed by its hash, computed here from the installed Streamlit), no plugins, no framing by other sites
  (`frame-ancestors 'none'`), forms and connections only to the server. Styles allow 'unsafe-inline' because
  Streamlit's and plotly's styling is injected at run time.
- X-Frame-Options: DENY (clickjacking, for browsers without frame-ancestors), X-Content-Type-Options: nosniff,
  Referrer-Policy: no-referrer (no patient pseudonym in a Referer), Cross-Origin-Opener-Policy: same-origin,
  a Permissions-Policy that turns off camera, microphone, geolocation and the like.
- Cache-Control: no-store on everything except Streamlit's content-hashed static files, so patient images and
  CSV / JSON exports are never kept in a browser or proxy cache.

HSTS belongs to the TLS-terminating reverse proxy (this server speaks plain HTTP).

Its lifespan hook starts `cached.warm_up` as the server starts: the model, explainer and the highest-risk
patients' explanations are then ready before the first patient is opened. `prewarm.py` adds a route and a
middleware that let the browser load the pages' element code while the user signs in.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st
from clinfuse.dashboards.prewarm import PrewarmTag, prewarm_route
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_PREFIX = "/static/"


def _inline_script_hashes() -> list[str]:
    """CSP hash sources of the inline scripts in the installed Streamlit's index.html."""
    index = Path(st.__file__).with_name("static") / "index.html"
    scripts = re.findall(r"<script>(.*?)</script>", index.read_text(encoding="utf-8"), flags=re.S)
    return [f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts]


def content_security_policy() -> str:
    directives = {
        "default-src": "'self'",
        "script-src": " ".join(["'self'", *_inline_script_hashes()]),
        "style-src": "'self' 'unsafe-inline'",
        "img-src": "'self' data: blob:",
        "font-src": "'self' data:",
        "media-src": "'self' data: blob:",
        "connect-src": "'self'",
        "worker-src": "'self' blob:",
        "frame-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


SECURITY_HEADERS = {
    "content-security-policy": content_security_policy(),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
}


class SecurityHeaders:
    """Pure ASGI middleware (streams and WebSockets pass through untouched) that sets SECURITY_HEADERS, and
    Cache-Control: no-store outside /static/, on every HTTP response, replacing any value already there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(SECURITY_HEADERS)
        if not str(scope.get("path", "")).startswith(STATIC_PREFIX):
            headers["cache-control"] = "no-store"
        ours = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.decode("latin-1").lower() not in headers]
                message = {**message, "headers": kept + ours}
            await send(message)

        await self.app(scope, receive, send_with_headers)


@asynccontextmanager
async def warm_up(_app: st.App) -> AsyncIterator[None]:
    """Starts the warm-up when the runtime has started (its caches exist), in a thread: the server answers meanwhile."""
    from clinfuse.dashboards import cached  # imported here: its cache decorators want the runtime, which exists now

    threading.Thread(target=cached.warm_up, name="clinfuse-warm-up", daemon=True).start()
    yield


app = st.App(Path(__file__).with_name("app.py"), lifespan=warm_up, routes=[prewarm_route()],
             middleware=[Middleware(SecurityHeaders), Middleware(PrewarmTag)])  # fmt: skip
