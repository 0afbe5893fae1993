"""Posting RiskAssessments as one FHIR transaction, to a tiny FHIR endpoint on loopback that records what arrives;
a failing endpoint and an unreachable one give one clear error; `clinfuse fhir` end to end."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from clinfuse.pipelines.interop.fhir_risk import risk_assessments
from clinfuse.pipelines.interop.fhir_transaction import post_transaction
from clinfuse.pipelines.scoring.results import ScoreResults
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.security import load_pseudonym_key
from fhir.resources.R4B.bundle import Bundle

ERROR = "no usable modality (imaging: truncated file)"


@dataclass
class FhirEndpoint:
    """What the endpoint received, and how it answers: a transaction-response, an HTTP error or a web page."""

    url: str
    answer: str = "transaction-response"
    received: list[dict] = field(default_factory=list)


def _handler(endpoint: FhirEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            endpoint.received.append({"path": self.path, "content_type": self.headers["Content-Type"], "body": body})
            if endpoint.answer == "500":
                outcome = {"resourceType": "OperationOutcome",
                           "issue": [{"severity": "fatal", "code": "exception", "diagnostics": "db down"}]}  # fmt: skip
                self._send(500, json.dumps(outcome).encode(), "application/fhir+json")
            elif endpoint.answer == "page":
                self._send(200, b"<html>welcome</html>", "text/html")
            else:
                entries = [{"response": {"status": "201 Created", "location": f"RiskAssessment/{i}/_history/1"}}
                           for i, _ in enumerate(json.loads(body)["entry"])]  # fmt: skip
                answer = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
                self._send(200, json.dumps(answer).encode(), "application/fhir+json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # keep the test output clean
            pass

    return Handler


@pytest.fixture
def fhir_endpoint() -> Iterator[FhirEndpoint]:
    endpoint = FhirEndpoint(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(endpoint))
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/fhir"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield endpoint
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _with_an_error_row(results: ScoreResults) -> ScoreResults:
    table = results.table.copy()
    table.loc[0, [c for c in table.columns if c.startswith(("risk", "contribution_"))]] = math.nan
    table.loc[0, ["modalities_present", "error"]] = ["", ERROR]
    return ScoreResults(table, results.metadata)


def test_one_transaction_bundle_arrives_with_an_entry_per_patient(demo_scores: Path, fhir_endpoint) -> None:
    results = _with_an_error_row(ScoreResults.open(demo_scores))
    result = post_transaction(fhir_endpoint.url, risk_assessments(results))
    assert (result.posted, result.created) == (300, 300)

    [request] = fhir_endpoint.received
    assert request["path"] == "/fhir" and request["content_type"] == "application/fhir+json"
    bundle = Bundle.model_validate_json(request["body"])
    assert bundle.type == "transaction" and len(bundle.entry) == 300
    assert all(e.request.method == "POST" and e.request.url == "RiskAssessment" for e in bundle.entry)
    assert len({e.fullUrl for e in bundle.entry}) == 300 and all(
        e.fullUrl.startswith("urn:uuid:") for e in bundle.entry
    )
    pseudonyms = [e.resource.subject.identifier.value for e in bundle.entry]
    assert pseudonyms == results.table["patient_id"].tolist()

    failed = bundle.entry[0].resource
    assert failed.status == "cancelled" and failed.prediction is None
    assert f"Not scored: {ERROR}" in [note.text for note in failed.note]
    present = [p.split("+") if p else [] for p in results.table["modalities_present"]]
    partial = [e.resource for e, p in zip(bundle.entry, present, strict=True) if 0 < len(p) < len(results.modalities)]
    assert partial and all(any(": missing" in note.text for note in r.note) for r in partial)


def test_a_failing_endpoint_is_one_clear_error(demo_scores: Path, fhir_endpoint) -> None:
    fhir_endpoint.answer = "500"
    resources = risk_assessments(ScoreResults.open(demo_scores))[:3]
    with pytest.raises(ClinFuseError, match=r"answered HTTP 500 .*OperationOutcome issues: exception") as error:
        post_transaction(fhir_endpoint.url, resources)
    assert "check its log" in str(error.value) and "db down" not in str(error.value)  # no server text echoed

    fhir_endpoint.answer = "page"
    with pytest.raises(ClinFuseError, match="without a transaction-response Bundle"):
        post_transaction(fhir_endpoint.url, resources)


def test_an_unreachable_server_or_a_non_http_url_is_one_clear_error(demo_scores: Path) -> None:
    resources = risk_assessments(ScoreResults.open(demo_scores))[:1]
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ClinFuseError, match="cannot reach FHIR server"):
        post_transaction(f"http://127.0.0.1:{port}/fhir", resources, timeout=5)
    with pytest.raises(ClinFuseError, match="is not an http"):
        post_transaction("file:///etc/passwd", resources)


def test_clinfuse_fhir_exports_and_posts_with_source_references(
    clinfuse_exe: Path, demo_scores: Path, demo_cohort: Path, fhir_endpoint, tmp_path: Path
) -> None:
    key = tmp_path / "pseudonym.key"
    key.write_text(load_pseudonym_key().decode())
    key.chmod(0o600)
    out = tmp_path / "risk.ndjson"
    command = [str(clinfuse_exe), "fhir", "--scores", str(demo_scores), "--out", str(out),
               "--fhir-server", fhir_endpoint.url, "--pseudonym-key", str(key),
               "--config", str(demo_cohort / "cohort.yaml")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "wrote 300 FHIR RiskAssessments (Patient/<source id> as subjects)" in result.stdout
    assert "300 created" in result.stdout
    lines = out.read_text().splitlines()
    assert len(lines) == 300 and all(json.loads(line)["subject"]["reference"].startswith("Patient/") for line in lines)
    assert len(Bundle.model_validate_json(fhir_endpoint.received[0]["body"]).entry) == 300

    result = subprocess.run(command[:-2], capture_output=True, text=True, timeout=300)  # the key without --config
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: --pseudonym-key and --config go together")
