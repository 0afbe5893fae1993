"""The planted truth of the demo cohort: per-patient latent factors, presence, labels and contributions.

The outcome's logit is a known sum of per-modality contributions plus an image x EHR interaction, so later
stages (fusion, explanations) can be checked against it. Missing modalities are missing at random: the
latent still drives the label, the data simply is not there, as in a real hospital.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

MODALITY_NAMES: tuple[str, ...] = ("imaging", "genomics", "ehr")
PRESENCE_RATES: dict[str, float] = {"imaging": 0.75, "genomics": 0.60, "ehr": 0.95}
# Modalities a cohort may add (`--modalities`): each a latent severity ~ N(0, 1) whose weighted value joins the
# logit, drawn from a stream of its own so the three above keep their latents and presence with or without them.
# Their files are the same too, except what follows the label (the index admission's outcome codes, follow-up
# radiographs): the label is redrawn, from the same uniform draw, with the added terms in the logit.
OPTIONAL_MODALITIES: tuple[str, ...] = ("notes", "ecg", "ct")
OPTIONAL_PRESENCE_RATES: dict[str, float] = {"notes": 0.70, "ecg": 0.60, "ct": 0.70}
_CENTRED_TERMS = ("interaction", "age")  # contributions that belong to no modality


@dataclass(frozen=True)
class SignalWeights:
    """Weights of the planted logit: intercept + sum of centred modality terms + interaction + age."""

    intercept: float = -1.1
    imaging: float = 2.4
    genomics: float = 1.8
    ehr: float = 1.9
    interaction: float = 1.0
    notes: float = 1.6
    ecg: float = 2.4  # as strong as the image finding: both show only their positive part
    ct: float = 2.4  # a CT nodule, like the radiograph's opacity, shows only the positive part
    age_per_year: float = 0.015
    age_center: float = 64.0


@dataclass
class PatientTruth:
    """One patient's planted latent state and outcome."""

    patient_id: str
    sex: str
    age: int
    index_time: datetime
    finding_amplitude: float  # image opacity strength, 0 = no finding
    gene_score: float  # standardised gene-set activity
    ehr_severity: float  # standardised chronic-disease burden
    present: dict[str, bool]
    contributions: dict[str, float] = field(default_factory=dict)
    logit: float = 0.0
    label: int = 0
    outcome_draw: float = 0.0  # the uniform draw behind the label: label = draw < sigmoid(logit)
    severity: dict[str, float] = field(default_factory=dict)  # latents of the optional modalities

    @property
    def dominant_modality(self) -> str | None:
        """The modality whose contribution clearly dominates (|top| >= 1 and >= 2x the runner-up)."""
        names = [m for m in self.contributions if m not in _CENTRED_TERMS]
        ranked = sorted(names, key=lambda m: abs(self.contributions[m]), reverse=True)
        top, second = abs(self.contributions[ranked[0]]), abs(self.contributions[ranked[1]])
        return ranked[0] if top >= 1.0 and top >= 2.0 * second else None


# E[max(0, Z)] for Z ~ N(0, 1): centres the image term so contributions average ~0 over the cohort.
_MEAN_FINDING = 1.0 / np.sqrt(2.0 * np.pi)
_INTERACTION_THRESHOLD = 0.5
# Each optional modality's logit term from its severity, as its data shows it: notes shift phrase frequencies both
# ways; an ECG shows only elevation and a CT only a nodule (max(0, z), centred like the image finding).
_OPTIONAL_TERMS = {
    "notes": lambda z: z,
    "ecg": lambda z: max(0.0, z) - _MEAN_FINDING,
    "ct": lambda z: max(0.0, z) - _MEAN_FINDING,
}


def sample_patients(n: int, rng: np.random.Generator, weights: SignalWeights) -> list[PatientTruth]:
    """Draw `n` patients with ids, demographics, index times, presence, latents, logits and labels."""
    ids = 10_000_000 + np.sort(rng.choice(9_000_000, size=n, replace=False))
    sexes = rng.choice(np.array(["F", "M"]), size=n)
    ages = np.clip(np.rint(rng.normal(64, 14, size=n)), 18, 95).astype(int)
    start = datetime(2140, 1, 1)
    index_offsets = rng.integers(0, 45 * 365 * 24 * 60, size=n)  # minutes into a 45-year shifted window
    finding = np.maximum(0.0, rng.normal(size=n))
    gene_score = rng.normal(size=n)
    ehr_severity = rng.normal(size=n)
    presence = {m: rng.random(size=n) < PRESENCE_RATES[m] for m in MODALITY_NAMES}
    presence["ehr"] |= ~(presence["imaging"] | presence["genomics"])  # everyone has at least one modality
    noise_u = rng.random(size=n)

    both = (finding > _INTERACTION_THRESHOLD) & (ehr_severity > _INTERACTION_THRESHOLD)
    p_both = float(np.mean(finding > _INTERACTION_THRESHOLD)) * float(np.mean(ehr_severity > _INTERACTION_THRESHOLD))
    patients = []
    for i in range(n):
        contributions = {
            "imaging": weights.imaging * (finding[i] - _MEAN_FINDING),
            "genomics": weights.genomics * gene_score[i],
            "ehr": weights.ehr * ehr_severity[i],
            "interaction": weights.interaction * (float(both[i]) - p_both),
            "age": weights.age_per_year * (ages[i] - weights.age_center),
        }
        logit = weights.intercept + sum(contributions.values())
        label = int(noise_u[i] < 1.0 / (1.0 + np.exp(-logit)))
        patients.append(
            PatientTruth(
                patient_id=str(ids[i]),
                sex=str(sexes[i]),
                age=int(ages[i]),
                index_time=start + timedelta(minutes=int(index_offsets[i])),
                finding_amplitude=float(finding[i]),
                gene_score=float(gene_score[i]),
                ehr_severity=float(ehr_severity[i]),
                present={m: bool(presence[m][i]) for m in MODALITY_NAMES},
                contributions={k: round(float(v), 6) for k, v in contributions.items()},
                logit=round(float(logit), 6),
                label=label,
                outcome_draw=float(noise_u[i]),
            )
        )
    return patients


def add_optional_modalities(patients: list[PatientTruth], names: tuple[str, ...], rng: np.random.Generator,
                            weights: SignalWeights) -> None:  # fmt: skip
    """Give each patient a severity, a presence and a logit term per optional modality; relabel with the same draw."""
    for name in names:
        severity = rng.normal(size=len(patients))
        present = rng.random(size=len(patients)) < OPTIONAL_PRESENCE_RATES[name]
        for patient, value, has in zip(patients, severity, present, strict=True):
            patient.severity[name] = float(value)
            patient.present[name] = bool(has)
            patient.contributions[name] = round(float(getattr(weights, name) * _OPTIONAL_TERMS[name](value)), 6)
    for patient in patients:
        logit = weights.intercept + sum(patient.contributions.values())
        patient.logit = round(float(logit), 6)
        patient.label = int(patient.outcome_draw < 1.0 / (1.0 + np.exp(-logit)))
