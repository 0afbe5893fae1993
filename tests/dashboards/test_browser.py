"""End to end in a real headless Chromium: `clinfuse dashboard` serves the app; sign in once the server has warmed
up, open the highest-risk patient, see the waterfall and the image, switch patients, screenshot, sign out. The
times from server start to the end of its warm-up, from sign-in to the cohort page and to the first patient's
complete page, and to switch patients are printed (not asserted: the machine may be busy).

Uses Debian's chromium (CLINFUSE_CHROMIUM, default /usr/bin/chromium) through Playwright; no browser download.
Without chromium the test fails and says how to install it: a skipped browser test would hide a broken UI.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from clinfuse.dashboards.data_source import load_scores
from clinfuse.dashboards.tables import present_list

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CLINFUSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT = REPO / "screenshots" / "dashboard-patient.png"
WARM_UP_TIMEOUT_S = 180  # the server loads the model and explains the first patients on a busy 2-core machine
WARM_UP_LOG = "dashboard warm-up"  # cached.warm_up's log line, when done or failed
SWITCH_TIMEOUT_MS = 30_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"dashboard server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"dashboard not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


def _wait_warm(server: subprocess.Popen, log: Path) -> str:
    """Until the server logs the end of its start-up warm-up; returns that line."""
    deadline = time.monotonic() + WARM_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        lines = [line for line in log.read_text().splitlines() if WARM_UP_LOG in line]
        if lines:
            return lines[0]
        assert server.poll() is None, f"dashboard server exited with {server.returncode}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no warm-up after {WARM_UP_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)  # the group this test started: clinfuse and its streamlit child
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _wait_complete(page, patient: str, timeout: float = SWITCH_TIMEOUT_MS) -> None:
    """Until the patient page has rendered to its end for this patient (its last element names the patient)."""
    page.get_by_text(f"End of the record of patient {patient}.").wait_for(state="visible", timeout=timeout)


def test_sign_in_open_top_patient_switch_and_sign_out(dashboard_env, clinfuse_exe: Path, tmp_path: Path) -> None:
    assert Path(CHROMIUM).is_file(), (
        f"chromium not found at {CHROMIUM}: run `make browser` (installs Debian's chromium) or point "
        "CLINFUSE_CHROMIUM at a Chromium binary"
    )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=SWITCH_TIMEOUT_MS)  # a loaded 2-core CI machine renders slowly; 5 s is too tight

    scores = load_scores(dashboard_env.scores)
    ranked = scores.table  # ranked by risk, as the app shows it
    top, second = ranked["patient_id"].iloc[0], ranked["patient_id"].iloc[1]
    dicom = {name for name, kind in scores.modalities.items() if kind == "dicom"}
    has_image = [bool(dicom & set(present_list(p))) for p in ranked["modalities_present"]]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    server_started = time.perf_counter()
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                str(clinfuse_exe),
                "dashboard",
                "--scores",
                str(dashboard_env.scores),
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--users",
                str(dashboard_env.users),
                "--audit-log",
                str(dashboard_env.audit),
                "--settings",
                str(dashboard_env.settings),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ),
        )
    try:
        _wait_healthy(url, server, log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(url)
            page.get_by_label("User name").fill("clara")
            page.get_by_role("textbox", name="Password").fill(dashboard_env.passwords["clara"])
            warm = _wait_warm(server, log)  # a clinician signs in to a server that has been running a while
            assert "failed" not in warm, warm
            warm_s = time.perf_counter() - server_started
            signed_in = time.perf_counter()
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Cohort")).to_be_visible(timeout=60_000)

            # The highest-risk patient is the first row; its row marker (checkbox column) selects it.
            grid = page.get_by_test_id("stDataFrame").first
            expect(grid).to_be_visible()
            expect(grid).to_contain_text(top)
            cohort_s = time.perf_counter() - signed_in
            clicked = time.perf_counter()
            box = grid.bounding_box()
            page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)
            expect(page.get_by_role("heading", name=f"Patient {top}")).to_be_visible()
            _wait_complete(page, top)
            first_s, total_s = time.perf_counter() - clicked, time.perf_counter() - signed_in
            print(
                f"\nserver start -> warm-up done {warm_s:.1f} s; sign-in -> cohort page {cohort_s:.2f} s; "
                f"cohort click -> first patient page complete {first_s:.2f} s (from sign-in {total_s:.2f} s)"
            )
            waterfall = page.get_by_test_id("stPlotlyChart").filter(has_text="How each modality moves the risk")
            expect(waterfall).to_be_visible()
            expect(waterfall.locator("g.waterfalllayer path").first).to_be_attached()
            images = page.get_by_test_id("stImage").locator("img")
            if has_image[0]:
                expect(images.first).to_be_visible()
                # visible is not yet decoded: wait for the decode (a broken image rejects it and fails the test)
            assert images.first.evaluate("img => img.decode().then(() => img.naturalWidth > 0)")

            # Switching patients: the time from the click until the page has rendered to its end. A pause before
            # each click stands for reading the page (the neighbours' explanations are prefetched meanwhile).
            timings = []
            for step, expected in (("Next ▶", second), ("◀ Previous", top)):
                page.wait_for_timeout(1000)
                started = time.perf_counter()
                page.get_by_role("button", name=step).click()
                _wait_complete(page, expected)
                timings.append(time.perf_counter() - started)
            print(f"next/previous patient page complete (s): {', '.join(f'{t:.2f}' for t in timings)}")
            if not has_image[0]:  # the top patient has no image: walk down the ranking to the first that has
                for patient in ranked["patient_id"].iloc[1 : has_image.index(True) + 1]:
                    page.get_by_role("button", name="Next ▶").click()
                    _wait_complete(page, patient)
            expect(images.first).to_be_visible()
            # visible is not yet decoded: wait for the decode (a broken image rejects it and fails the test)
            assert images.first.evaluate("img => img.decode().then(() => img.naturalWidth > 0)")

            # Streamlit scrolls inside its main container: a tall viewport puts the whole page in the screenshot.
            height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight ?? 2400")
            page.set_viewport_size({"width": 1500, "height": min(6000, max(1100, height + 40))})
            page.wait_for_timeout(1000)
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            print(f"screenshot: {SCREENSHOT}")
            page.set_viewport_size({"width": 1500, "height": 1100})

            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_text("You have signed out.")).to_be_visible(timeout=SWITCH_TIMEOUT_MS)
            expect(page.get_by_role("textbox", name="Password")).to_be_visible()
            browser.close()
    finally:
        _stop(server)
    actions = [(e["action"], e["patient"]) for e in dashboard_env.audit_entries()]
    assert actions[0] == ("login", None) and actions[-1] == ("logout", None)
    assert ("view_patient", top) in actions and ("view_patient", second) in actions
    assert SCREENSHOT.stat().st_size > 10_000
