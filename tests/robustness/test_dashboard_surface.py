"""The dashboard's HTTP and file surface: the cohort CSV export cannot carry spreadsheet formulas, and the server
that `clinfuse dashboard` starts sends security headers (checked on real responses from a loopback server)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
from clinfuse.dashboards.dashboard_config import RiskBands
from clinfuse.dashboards.tables import cohort_display, with_bands

HOSTILE_IDS = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1", '=HYPERLINK("http://x")']


def _cohort_export(source_ids: list[str]) -> str:
    """The cohort page's CSV download for patients whose source ids (from the site's cohort table) are hostile."""
    from clinfuse.dashboards import page_cohort

    n = len(source_ids)
    table = pd.DataFrame(
        {
            "rank": np.arange(1, n + 1),
            "patient_id": [f"p{i:016x}" for i in range(n)],
            "source_id": source_ids,
            "risk": np.linspace(0.9, 0.1, n),
            "risk_lower": np.linspace(0.8, 0.05, n),
            "risk_upper": np.linspace(0.95, 0.2, n),
            "modalities_present": ["image+genomics"] * n,
            "sex": ["-F"] + ["M"] * (n - 1),
            "age": [-1.0] + [50.0] * (n - 1),
            "warnings": ["@warning"] + [""] * (n - 1),
            "error": [""] * n,
        }
    )
    display = cohort_display(with_bands(table, RiskBands()), ["image", "genomics"])
    return page_cohort.cohort_csv(display).decode()


def test_cohort_csv_export_neutralises_formula_cells() -> None:
    text = _cohort_export(HOSTILE_IDS)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [row["source id"] for row in rows] == ["'" + value for value in HOSTILE_IDS], "ids keep their text"
    for row in rows:
        for column, cell in row.items():
            if not _is_number(cell):  # a spreadsheet reads -1.0 as a number, not as a formula
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), f"{column}: {cell!r} runs as a formula"
    assert rows[0]["sex"] == "'-F" and rows[0]["notes"] == "'@warning"
    assert rows[0]["age"] == "-1.0", "numbers stay numbers"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}


@pytest.fixture(scope="module")
def dashboard_server(tmp_path_factory: pytest.TempPathFactory):
    """The server exactly as `clinfuse dashboard` starts it (its command line), on a free loopback port."""
    from clinfuse.dashboards.cli import streamlit_command

    home = tmp_path_factory.mktemp("dashboard-home")
    port = _free_port()
    log = home / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            streamlit_command(port, "127.0.0.1"),
            env={**os.environ, "CLINFUSE_HOME": str(home), "HOME": str(home)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if _get(f"{url}/_stcore/health")[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, f"no server:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.parametrize("path", ["/", "/_stcore/health", "/cohort"])
def test_dashboard_responses_carry_security_headers(dashboard_server: str, path: str) -> None:
    status, headers = _get(dashboard_server + path)
    assert status == 200
    policy = {
        directive.split()[0]: directive.split()[1:]
        for directive in headers.get("content-security-policy", "").split(";")
        if directive.strip()
    }
    assert policy.get("frame-ancestors") == ["'none'"], headers
    assert policy.get("object-src") == ["'none'"]
    assert "'unsafe-inline'" not in policy.get("script-src", ["'unsafe-inline'"]), "no inline scripts from anyone"
    assert "'unsafe-eval'" not in policy["script-src"]
    assert headers.get("x-frame-options") == "DENY"
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("referrer-policy") == "no-referrer"
    assert headers.get("cache-control") == "no-store", "patient pages and exports must not be cached"


def test_streamlits_inline_script_is_allowed_by_its_hash(dashboard_server: str) -> None:
    """The policy must not break the page it protects: every inline script of the served index.html is allowed."""
    with urllib.request.urlopen(dashboard_server + "/", timeout=5) as response:
        page = response.read().decode()
        policy = response.headers["Content-Security-Policy"]
    for script in re.findall(r"<script>(.*?)</script>", page, flags=re.S):
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy


@pytest.mark.parametrize("path", ["/", "/cohort"])
def test_pages_load_the_prewarm_script_whose_chunks_exist(dashboard_server: str, path: str) -> None:
    """Every page carries the prewarm module tag (also when the browser asks for gzip), and each chunk the script
    imports resolves, relative to the script's URL, to a file the server serves."""
    from clinfuse.dashboards.prewarm import PREWARM_SCRIPT

    request = urllib.request.Request(dashboard_server + path, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=5) as response:
        page = response.read().decode()
        assert int(response.headers["Content-Length"]) == len(page.encode())
    assert page.count(f'<script type="module" src=".{PREWARM_SCRIPT}"></script></head>') == 1
    with urllib.request.urlopen(dashboard_server + PREWARM_SCRIPT, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/javascript")
        script = response.read().decode()
    chunks = re.findall(r'"\.\./(static/js/[^"]+\.js)"', script)
    assert len(chunks) >= 2
    for chunk in chunks:
        assert _get(f"{dashboard_server}/{chunk}")[0] == 200, chunk


def test_every_prewarmed_element_has_its_chunk_in_the_installed_streamlit() -> None:
    """A Streamlit upgrade that renames an element's chunk would silently slow the first pages down again."""
    from clinfuse.dashboards.prewarm import PREWARMED_ELEMENTS, chunk_files

    assert set(chunk_files()) == set(PREWARMED_ELEMENTS)
