"""Load the browser code of the elements the cohort and patient pages draw while the user is still signing in.

Streamlit's frontend fetches and evaluates the code of an element type (a JavaScript chunk) only when a page
first draws one; the plotly chunk alone is 4.7 MB, and fetching and evaluating the cohort page's chunks made up
most of the seconds between "Sign in" and a drawn cohort table on a 2-core machine. The page HTML therefore
gets one more module script, PREWARM_SCRIPT, which imports those chunks once the sign-in page is idle. The
browser keeps evaluated modules by URL, so when Streamlit imports the same chunk later it is already there.

Chunk files carry a content hash in their names; they are looked up in the installed Streamlit's build
(`chunk_files`), and an element whose chunk is not found is left to load on first use as before (the tests
name any that a Streamlit upgrade renamed). Streamlit has no option for this, hence this module.
"""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The element types the cohort page (table, filters, metrics, histogram, export) and the patient page (picker,
# images, checkboxes) draw, by the names of their chunks in Streamlit's build
PREWARMED_ELEMENTS = ("DataFrame", "PlotlyChart", "Multiselect", "Slider", "Metric", "DownloadButton", "Selectbox",
                      "ImageList", "Checkbox")  # fmt: skip
PREWARM_SCRIPT = "/_clinfuse/prewarm.js"
STREAMLIT_PREFIXES = ("/_stcore/", "/media/", "/component/", "/static/", "/_clinfuse/")
JS_FOLDER = Path(st.__file__).with_name("static") / "static" / "js"


def chunk_files(elements: tuple[str, ...] = PREWARMED_ELEMENTS) -> dict[str, str]:
    """Element name -> its chunk's file name in the installed Streamlit (elements without one are left out)."""
    found = {}
    for element in elements:
        matches = sorted(p.name for p in JS_FOLDER.glob(f"{element}.*.js") if p.name.count(".") == 2)
        if len(matches) == 1:
            found[element] = matches[0]
    return found


def prewarm_script() -> str:
    """The module that imports the chunks when the page is idle (relative to its own URL: ../static/js/)."""
    urls = [f"../static/js/{name}" for name in chunk_files().values()]
    return (
        f"const chunks = {json.dumps(urls)};\n"
        "const load = () => chunks.forEach((url) => import(url).catch(() => {}));\n"
        "if ('requestIdleCallback' in window) requestIdleCallback(load, { timeout: 3000 });\n"
        "else setTimeout(load, 1000);\n"
    )


def prewarm_route() -> Route:
    script = prewarm_script()

    async def serve(_request) -> Response:
        return Response(script, media_type="text/javascript")

    return Route(PREWARM_SCRIPT, serve, methods=["GET"])


TAG = f'<script type="module" src=".{PREWARM_SCRIPT}"></script>'.encode()


class PrewarmTag:
    """Pure ASGI middleware adding the prewarm script tag to the page HTML (Streamlit's index.html, served for
    every page path). Page requests lose their Accept-Encoding so that Streamlit's gzip leaves the few kB of HTML
    readable here; every other request passes through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or scope.get("method") != "GET" or path.startswith(STREAMLIT_PREFIXES):
            await self.app(scope, receive, send)
            return
        scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"accept-encoding"]}
        start: Message | None = None
        body = bytearray()

        async def send_with_tag(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                if not headers.get(b"content-type", b"").startswith(b"text/html"):
                    await send(message)
                    return
                start = message
                return
            if start is None:
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            page = bytes(body).replace(b"</head>", TAG + b"</head>", 1)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, send_with_tag)
