"""The real `mlflow models serve` of the registered model on loopback: a demo patient's request is answered with
`clinfuse score`'s risk, and a malformed row with an error row, not an HTTP error."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from clinfuse.pipelines.registry.store import ModelRegistry
from clinfuse.pipelines.scoring.results import ScoreResults
from clinfuse.pipelines.serving.example import example_request
from clinfuse.platform.security import Pseudonymiser, load_pseudonym_key

READY_TIMEOUT_S = 180  # the server imports torch and loads, verifies and warms the model before /ping answers
ANSWER_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (mlflow's CLI, uvicorn and its worker), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def serving_process(registered_model: str, clinfuse_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """The server, started (not yet ready): the request is built while it loads."""
    venv_bin = Path(sys.executable).parent
    env = os.environ | {
        "MLFLOW_TRACKING_URI": ModelRegistry().tracking_uri,
        "CLINFUSE_HOME": str(clinfuse_home),
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow runs `uvicorn` from PATH
    }
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    command = [str(venv_bin / "mlflow"), "models", "serve", "-m", registered_model, "-h", "127.0.0.1",
               "-p", str(port), "--env-manager", "local"]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process, f"http://127.0.0.1:{port}", log
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def patient_request(registered_model: str, demo_cohort: Path, demo_truth: dict) -> tuple[str, dict]:
    """(source id, request body) of a demo patient with every modality."""
    patient = next(p for p, truth in demo_truth["patients"].items() if all(truth["present"].values()))
    bundle = ModelRegistry().resolve(registered_model).path
    return patient, example_request(demo_cohort / "cohort.yaml", bundle, [patient])


@pytest.fixture(scope="module")
def server(serving_process, patient_request) -> str:
    """The server's URL once GET /ping answers 200."""
    process, url, log = serving_process
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow models serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=5) as answer:
                if answer.status == 200:
                    return url
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow models serve did not answer /ping within {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _invoke(url: str, body: dict) -> tuple[int, list[dict]]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=ANSWER_TIMEOUT_S) as answer:
        return answer.status, json.loads(answer.read())["predictions"]


def test_the_served_risk_equals_clinfuse_score(server: str, patient_request: tuple[str, dict], demo_scores: Path):
    patient, body = patient_request
    status, predictions = _invoke(server, body)
    assert status == 200 and len(predictions) == 1
    answer = predictions[0]
    batch = ScoreResults.open(demo_scores).table.set_index("patient_id")
    expected = batch.loc[Pseudonymiser(load_pseudonym_key())(patient)]
    assert answer["risk"] == pytest.approx(expected["risk"], abs=1e-6)
    assert answer["modalities_present"] == expected["modalities_present"] and answer["error"] == ""
    assert (answer["model_name"], answer["model_version"]) == ("demo", 1)
    assert pd.Timestamp(answer["scored_at"]).tzinfo is not None


def test_a_malformed_row_is_answered_with_an_error_row(server: str, patient_request: tuple[str, dict]) -> None:
    patient, body = patient_request
    malformed = body["dataframe_records"][0] | {"genomics": [1.0, 2.0]}
    status, predictions = _invoke(server, {"dataframe_records": [malformed]})
    assert status == 200 and len(predictions) == 1
    row = predictions[0]
    assert row["error"].startswith("request: a table cell of the request is a list"), row["error"]
    assert math.isnan(row["risk"]) and patient not in row["error"]
    assert (row["model_name"], row["model_version"]) == ("demo", 1)
