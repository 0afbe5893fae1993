"""FHIR R4 RiskAssessment resources from a `clinfuse score` output, one per scored patient (docs/fhir.md).

Each resource is validated with fhir.resources' R4B models (RiskAssessment is unchanged from R4) before
anything is written, and the NDJSON file is written whole or not at all. Patients whose row has an error get a
`cancelled` RiskAssessment stating it, so every scored patient has exactly one resource.

The subject is the ClinFuse pseudonym (an identifier under PSEUDONYM_SYSTEM) unless the operator passes the
pseudonym key: then the scoring cohort's source ids are pseudonymised with it and matched, and the subject is
`Patient/<source id>`. Nothing here logs; the error messages give counts, never patient ids.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from clinfuse.pipelines.registry.bundle import PROVENANCE_FILE
from clinfuse.pipelines.scoring.results import ScoreResults
from clinfuse.pipelines.training import run_files
from clinfuse.platform.cache.feature_cache import REPORT_FILE
from clinfuse.platform.errors import ClinFuseError
from fhir.resources.R4B.riskassessment import RiskAssessment

# ClinFuse's own FHIR names (identifier systems, extension, code system). They identify; nothing is served there.
CLINFUSE_FHIR = "http://clinfuse.org/fhir"
PSEUDONYM_SYSTEM = f"{CLINFUSE_FHIR}/sid/patient-pseudonym"
ASSESSMENT_SYSTEM = f"{CLINFUSE_FHIR}/sid/risk-assessment"
MODEL_SYSTEM = f"{CLINFUSE_FHIR}/CodeSystem/registered-model"
# prediction[0].probabilityRange cannot sit beside probabilityDecimal (one choice element), so the risk interval
# is this complex extension on prediction[0]: sub-extensions low, high and level (all valueDecimal).
INTERVAL_EXTENSION = f"{CLINFUSE_FHIR}/StructureDefinition/risk-interval"

RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
# (upper bound, exclusive; code; display) of each qualitative band of the calibrated risk. 0.5 is where the code
# system's own definition puts `high` ("more likely to occur than not"); 0.1 is the lowest of `clinfuse evaluate`'s
# default operating-point thresholds (0.1, 0.2, 0.3, 0.5), so the model card reports sensitivity, specificity, PPV
# and NPV at both cut points, and is the usual boundary of "low" in clinical risk communication (10%).
RISK_BANDS: tuple[tuple[float, str, str], ...] = (
    (0.1, "low", "Low likelihood"),
    (0.5, "moderate", "Moderate likelihood"),
    (math.inf, "high", "High likelihood"),
)

# The FHIR resource type an input of each modality kind is. The scoring cache keeps no source identifier
# (DICOM UIDs, resource ids) of what it ingested, only content digests, so basis references name the modality by
# display and type only. A kind not listed gets an untyped reference. An EHR modality is many events of several
# resource types (Condition, Procedure, MedicationRequest, Observation): one List stands for them.
BASIS_TYPES = {"dicom": "ImagingStudy", "table": "Observation", "waveform": "Observation",
               "notes": "DocumentReference", "ehr": "List"}  # fmt: skip

# a FHIR resource id: what `Patient/<source id>` needs the cohort's ids to be
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
DECIMALS = 4  # risks are written to 0.01 percentage points


def risk_band(risk: float) -> tuple[str, str]:
    """(code, display) in RISK_PROBABILITY of a calibrated risk."""
    return next((code, display) for bound, code, display in RISK_BANDS if risk < bound)


def read_pseudonym_key(path: Path) -> bytes:
    """The pseudonym key in `path`, refused like the default key file when short, guessable or open to others."""
    from clinfuse.platform.security.pseudonym import read_key_file

    return read_key_file(path)


def source_ids(results: ScoreResults, cohort_config: Path, key: bytes) -> dict[str, str]:
    """Pseudonym -> source patient id of every scored patient: the ids of the scoring cohort table pseudonymised
    with `key`, matched to the scores. A key or cohort other than the scoring one matches nobody: refused."""
    from clinfuse.platform.config.loader import load_cohort_config
    from clinfuse.platform.ingest.cohort_table import load_cohort
    from clinfuse.platform.security import Pseudonymiser

    config = load_cohort_config(cohort_config, check_files=False, labels_required=False)
    pseudonymise = Pseudonymiser(key, enabled=config.pseudonymise_ids)
    known = {pseudonymise(pid): pid for pid in load_cohort(config, scoring=True).patient_ids}
    scored = results.table["patient_id"]
    unmatched = int((~scored.isin(known)).sum())
    if unmatched:
        raise ClinFuseError(
            f"{unmatched} of {len(scored)} scored patients are not in the cohort of {cohort_config} under that "
            "pseudonym key",
            "pass the pseudonym key and the cohort.yaml the scores were made with",
        )
    return {pseudonym: known[pseudonym] for pseudonym in scored}


def risk_assessments(results: ScoreResults, subjects: Mapping[str, str] | None = None) -> list[RiskAssessment]:
    """One validated RiskAssessment per row of the scores, in their order. `subjects` maps pseudonym -> source
    id (see source_ids); without it the subject is the pseudonym, unless the cohort was ingested without
    pseudonyms (`pseudonymise_ids: false`), whose ids are the source ids in every ClinFuse output already."""
    context = _Context.of(results)
    if subjects is None and not context.pseudonymised:
        subjects = {pid: pid for pid in results.table["patient_id"]}
    if subjects is not None:
        invalid = sum(not _FHIR_ID.fullmatch(subjects[pid]) for pid in results.table["patient_id"])
        if invalid:
            raise ClinFuseError(
                f"{invalid} source patient ids are not FHIR resource ids (letters, digits, '-', '.', at most 64), "
                "so `Patient/<id>` cannot reference them",
                "the cohort's ids must be the FHIR server's Patient ids; leave out --pseudonym-key to reference "
                "subjects by pseudonym",
            )
    return [_risk_assessment(row, context, subjects) for row in results.table.to_dict("records")]


def write_ndjson(resources: Iterable[RiskAssessment], out: Path) -> int:
    """Write one resource per line to `out` via a temporary sibling and a rename: readers never see half a
    file. Returns the number written."""
    temporary = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    count = 0
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("w", encoding="utf-8") as handle:
            for resource in resources:
                handle.write(resource.model_dump_json() + "\n")
                count += 1
        os.replace(temporary, out)
    except OSError as exc:
        raise ClinFuseError(f"cannot write {out} ({exc.strerror})", "pass a writable file path") from None
    finally:
        if temporary.exists():  # a failed write leaves nothing behind
            temporary.unlink()
    return count


class _Context:
    """What every resource of one scores file shares."""

    def __init__(self, results: ScoreResults, outcome: str, interval_level: float, pseudonymised: bool) -> None:
        self.results = results
        self.outcome = outcome
        self.interval_level = interval_level
        self.pseudonymised = pseudonymised  # else the scores' ids are source ids (`pseudonymise_ids: false`)
        name, version = results.model_name, results.model_version
        self.method = {
            "coding": [{"system": MODEL_SYSTEM, "code": name, "version": str(version),
                        "display": f"ClinFuse model {name} version {version}"}],
            "text": f"ClinFuse model {name} version {version}: late fusion of "
                    f"{', '.join(results.modalities)}, Platt-calibrated",
        }  # fmt: skip

    @classmethod
    def of(cls, results: ScoreResults) -> _Context:
        provenance = json.loads((results.model_dir / PROVENANCE_FILE).read_text())
        cohort = provenance.get("cohort_name")
        outcome = (
            f"the outcome of training cohort '{cohort}'" if cohort else f"the outcome of model {results.model_name}"
        )
        calibration = json.loads((results.model_dir / run_files.CALIBRATION).read_text())
        report = json.loads((results.cache / REPORT_FILE).read_text())
        return cls(results, outcome, float(calibration["fusion_interval"]["level"]), report["pseudonymised_ids"])


def _risk_assessment(row: dict, context: _Context, subjects: Mapping[str, str] | None) -> RiskAssessment:
    pseudonym = row["patient_id"]
    model = f"{context.results.model_name}/{context.results.model_version}"
    subject: dict = {"identifier": {"system": PSEUDONYM_SYSTEM, "value": pseudonym}} if context.pseudonymised else {}
    if subjects is not None:
        subject["reference"] = f"Patient/{subjects[pseudonym]}"
    resource: dict = {
        "resourceType": "RiskAssessment",
        "identifier": [{"system": ASSESSMENT_SYSTEM, "value": f"{model}/{row['scored_at']}/{pseudonym}"}],
        "subject": subject,
        "occurrenceDateTime": row["scored_at"],
        "method": context.method,
    }
    if row["error"]:
        resource["status"] = "cancelled"  # ObservationStatus: not completed
        notes = [f"Not scored: {row['error']}"]
    else:
        resource["status"] = "final"
        resource["prediction"] = [_prediction(row, context)]
        resource["basis"] = _basis(row, context.results.modalities)
        notes = _explanation_notes(row, context.results)
    if row["warnings"] and row["warnings"] not in row["error"]:
        notes.append(f"Warnings: {row['warnings']}")
    resource["note"] = [{"text": text} for text in notes]
    return RiskAssessment.model_validate(resource)


def _prediction(row: dict, context: _Context) -> dict:
    code, display = risk_band(row["risk"])
    interval = [{"url": "low", "valueDecimal": round(row["risk_lower"], DECIMALS)},
                {"url": "high", "valueDecimal": round(row["risk_upper"], DECIMALS)},
                {"url": "level", "valueDecimal": context.interval_level}]  # fmt: skip
    return {
        "outcome": {"text": context.outcome},
        "probabilityDecimal": round(row["risk"], DECIMALS),
        "qualitativeRisk": {"coding": [{"system": RISK_PROBABILITY, "code": code, "display": display}]},
        "extension": [{"url": INTERVAL_EXTENSION, "extension": interval}],
    }


def _basis(row: dict, modalities: Mapping[str, str]) -> list[dict]:
    """A display-only reference per modality the patient was scored with (see BASIS_TYPES)."""
    present = set(row["modalities_present"].split("+"))
    references = []
    for name, kind in modalities.items():
        if name in present:
            reference = {"display": f"{name} ({kind}) data of this patient, as ingested for scoring"}
            if kind in BASIS_TYPES:
                reference["type"] = BASIS_TYPES[kind]
            references.append(reference)
    return references


def _explanation_notes(row: dict, results: ScoreResults) -> list[str]:
    """The per-modality contributions in words (when the scores were explained), then the missing modalities."""
    present = set(row["modalities_present"].split("+"))
    notes = []
    if results.explained:
        effects = [_effect(name, row[f"contribution_{name}"]) for name in results.modalities if name in present]
        notes.append(f"Contributions (exact modality Shapley values) to the risk, from {row['contribution_base']:.3f} "
                     f"with every modality masked: {'; '.join(effects)}")  # fmt: skip
    missing = [f"{name}: missing" for name in results.modalities if name not in present]
    if missing:
        notes.append("; ".join(missing))
    return notes


def _effect(name: str, value: float) -> str:
    if abs(value) < 0.0005:
        return f"{name} changed it by less than 0.001"
    return f"{name} {'raised the risk' if value > 0 else 'lowered it'} by {abs(value):.3f}"
