"""POST RiskAssessments to a FHIR server as one transaction Bundle, with the standard library's HTTP client.

A transaction is applied whole or not at all by the server, so a failed post stores nothing and can simply be
repeated. Errors name the HTTP status and the fix; they quote no server text, which could echo patient data,
only the OperationOutcome's issue codes.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from clinfuse.platform.errors import ClinFuseError
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.riskassessment import RiskAssessment

FHIR_JSON = "application/fhir+json"
TIMEOUT_S = 120.0  # one request for the whole cohort: a server may take a while to store thousands of resources


@dataclass(frozen=True)
class TransactionResult:
    posted: int
    statuses: dict[str, int]  # HTTP status code of an entry's response -> entries

    @property
    def created(self) -> int:
        return self.statuses.get("201", 0)


def check_base_url(base_url: str) -> None:
    """Only http(s): urllib would also open file: and ftp: URLs."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClinFuseError(
            f"--fhir-server {base_url} is not an http(s) URL", "e.g. --fhir-server http://host:8080/fhir"
        )


def transaction_bundle(resources: Sequence[RiskAssessment]) -> Bundle:
    """A validated transaction Bundle that creates each resource (fullUrl urn:uuid, request POST RiskAssessment)."""
    entries = [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": resource.model_dump(),
         "request": {"method": "POST", "url": "RiskAssessment"}}
        for resource in resources
    ]  # fmt: skip
    return Bundle.model_validate({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def post_transaction(
    base_url: str, resources: Sequence[RiskAssessment], timeout: float = TIMEOUT_S
) -> TransactionResult:
    """`POST [base]` of one transaction Bundle; returns the entry statuses of the transaction-response."""
    check_base_url(base_url)
    body = transaction_bundle(resources).model_dump_json().encode()
    request = urllib.request.Request(base_url.rstrip("/"), data=body, method="POST",
                                     headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:  # a non-2xx answer
        raise ClinFuseError(
            f"FHIR server {base_url} answered HTTP {exc.code} ({exc.reason}) to the transaction of {len(resources)} "
            f"RiskAssessments{_issue_codes(exc.read())}",
            _fix(exc.code),
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise ClinFuseError(f"FHIR server {base_url} did not answer within {timeout:.0f}s",
                                "check the server for the assessments before posting again: it may have stored "
                                "them after the wait ended") from None  # fmt: skip
        raise ClinFuseError(f"cannot reach FHIR server {base_url} ({reason})",
                            "check --fhir-server (the server's FHIR base URL) and that the server is up and "
                            "reachable from here") from None  # fmt: skip
    return TransactionResult(len(resources), _entry_statuses(payload, base_url, status))


def _entry_statuses(payload: bytes, base_url: str, status: int) -> dict[str, int]:
    try:
        answer = json.loads(payload)
        if answer.get("resourceType") != "Bundle" or answer.get("type") != "transaction-response":
            raise ValueError("not a transaction-response Bundle")
        return dict(Counter(str(e["response"]["status"]).split()[0] for e in answer.get("entry", [])))
    except (ValueError, AttributeError, KeyError, TypeError, IndexError):
        raise ClinFuseError(
            f"FHIR server {base_url} answered HTTP {status} without a transaction-response Bundle",
            "check that --fhir-server is the server's FHIR base URL (where [base]/metadata answers), not a "
            "resource endpoint or a web page",
        ) from None


def _issue_codes(payload: bytes) -> str:
    """The OperationOutcome's issue codes (e.g. 'invalid', 'not-found'), which carry no patient data."""
    try:
        codes = sorted({str(issue["code"]) for issue in json.loads(payload)["issue"]})
    except (ValueError, KeyError, TypeError):
        return ""
    return f" (OperationOutcome issues: {', '.join(codes)})" if codes else ""


def _fix(status: int) -> str:
    if status in (400, 409, 412, 422):
        return ("the server rejected the Bundle; if a subject reference does not resolve, the Patients must "
                "exist on the server, or leave out --pseudonym-key to reference subjects by pseudonym")  # fmt: skip
    if status in (401, 403):
        return ("the server requires authorisation, which clinfuse does not send: post the --fhir NDJSON file with "
                "your site's FHIR client, or allow this host")  # fmt: skip
    if status in (404, 405):
        return "--fhir-server must be the FHIR base URL (where [base]/metadata answers), e.g. http://host:8080/fhir"
    if status == 413:
        return "the Bundle is larger than the server accepts: raise its request size limit"
    if status >= 500:
        return (
            "the server failed: check its log (after a gateway timeout, also whether the assessments arrived), "
            "then post again"
        )
    return "see the server's log for why it refused the transaction"
