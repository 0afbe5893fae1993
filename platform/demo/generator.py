"""Generate the demo cohort: DICOM, expression tables, EHR (MIMIC-IV, OMOP, MEDS or FHIR), cohort table, config
and truth."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from clinfuse.platform.config import CohortConfig, CohortTable, write_cohort_config
from clinfuse.platform.demo.ct import LUNG_WINDOW, write_ct
from clinfuse.platform.demo.dicom_export import (
    ImageRecord,
    Presentation,
    draw_presentation,
    fake_header,
    write_radiograph,
)
from clinfuse.platform.demo.ecg import write_ecgs
from clinfuse.platform.demo.ehr_formats import EHR_FORMATS, ehr_writer
from clinfuse.platform.demo.expression import write_expression
from clinfuse.platform.demo.latent import (
    MODALITY_NAMES,
    OPTIONAL_MODALITIES,
    PatientTruth,
    SignalWeights,
    add_optional_modalities,
    sample_patients,
)
from clinfuse.platform.demo.mimic import build_mimic4
from clinfuse.platform.demo.notes import write_notes
from clinfuse.platform.demo.radiograph import Finding, render_radiograph
from clinfuse.platform.demo.tables import write_csv_deterministic
from clinfuse.platform.demo.vocabulary import LEAK_DIAGNOSES, PLANTED_DIAGNOSES, PLANTED_LAB_SHIFTS
from clinfuse.platform.errors import ClinFuseError

# One random stream per job, in this order; a new job's stream is only ever appended, so that the others (and their
# files) stay the same. "image_presentation" varies the radiographs' VOI and burned-in text.
STREAMS = ("latent", "image", "genes", "ehr", "optional_latents", "notes", "ecg", "ct", "image_presentation")
# The writer of each optional modality: (subjects, folder, rng) -> (truth per patient, planted facts)
OPTIONAL_WRITERS: dict[str, Callable[[list, Path, np.random.Generator], tuple[dict[str, dict], dict]]] = {
    "notes": write_notes,
    "ecg": write_ecgs,
    "ct": write_ct,
}
PRIOR_STUDY_RATE = 0.20
FOLLOW_UP_STUDY_RATE = 0.08
PORTRAIT_RATE = 0.15


def generate_demo_cohort(out: Path, patients: int = 1000, seed: int = 0,
                         modalities: tuple[str, ...] = MODALITY_NAMES,
                         ehr_format: str = "mimic4") -> dict[str, int]:  # fmt: skip
    """Write a full synthetic cohort under `out`; return counts per modality. Deterministic per seed.

    `modalities`: imaging, genomics and ehr always, plus any of OPTIONAL_MODALITIES. Without the optional ones
    the cohort is the same, file for file, as before they existed (their latents and files come from random
    streams of their own). `ehr_format`: the EHR's layout, one of EHR_FORMATS; each holds the same events."""
    if patients < 1:
        raise ClinFuseError(f"--patients must be at least 1, got {patients}")
    if ehr_format not in EHR_FORMATS:
        raise ClinFuseError(f"--ehr-format: unknown format {ehr_format!r}", f"use one of {', '.join(EHR_FORMATS)}")
    optional = _optional_modalities(modalities)
    _prepare_output(out)
    streams = np.random.SeedSequence(seed).spawn(len(STREAMS))
    rng = {job: np.random.default_rng(stream) for job, stream in zip(STREAMS, streams, strict=True)}
    weights = SignalWeights()
    cohort = sample_patients(patients, rng["latent"], weights)
    add_optional_modalities(cohort, optional, rng["optional_latents"], weights)

    images, findings, presentations = _write_imaging(cohort, out, seed, rng["image"], rng["image_presentation"])
    gene_loadings = write_expression(cohort, out / "genomics", rng["genes"])
    ehr_tables, ehr_truth = build_mimic4(cohort, rng["ehr"])
    ehr_writer(ehr_format)(ehr_tables, out / "ehr")
    optional_truth = {name: OPTIONAL_WRITERS[name](_subjects(cohort, name), out / name, rng[name]) for name in optional}

    write_csv_deterministic(
        pd.DataFrame(
            {
                "patient_id": [p.patient_id for p in cohort],
                "label": [p.label for p in cohort],
                "sex": [p.sex for p in cohort],
                "age": [p.age for p in cohort],
                "index_time": [p.index_time.strftime("%Y-%m-%d %H:%M:%S") for p in cohort],
            }
        ),
        out / "cohort.csv",
    )
    manifest = [
        {"patient_id": pid, "path": str(rec.path.relative_to(out))} for pid, recs in images.items() for rec in recs
    ]
    write_csv_deterministic(pd.DataFrame(manifest).sort_values("path"), out / "imaging_manifest.csv")
    write_cohort_config(_demo_config(out, optional, ehr_format), out / "cohort.yaml")
    planted_images = {"image_presentation": presentations}
    _write_truth(out / "ground_truth.json", cohort, weights, seed, findings, gene_loadings, ehr_truth, optional_truth,
                 planted_images)  # fmt: skip
    return {
        "patients": patients,
        "imaging": sum(p.present["imaging"] for p in cohort),
        "dicom_files": sum(len(v) for v in images.values()),
        "genomics": sum(p.present["genomics"] for p in cohort),
        "ehr": sum(p.present["ehr"] for p in cohort),
        **{name: sum(p.present[name] for p in cohort) for name in optional},
        **({"ct_files": optional_truth["ct"][1]["files"]} if "ct" in optional else {}),
        "positives": sum(p.label for p in cohort),
    }


def _optional_modalities(modalities: tuple[str, ...]) -> tuple[str, ...]:
    unknown = sorted(set(modalities) - set(MODALITY_NAMES) - set(OPTIONAL_MODALITIES))
    missing = [m for m in MODALITY_NAMES if m not in modalities]
    if unknown or missing:
        raise ClinFuseError(
            f"--modalities: {'unknown ' + ', '.join(unknown) if unknown else 'missing ' + ', '.join(missing)}",
            f"give {', '.join(MODALITY_NAMES)} and any of {', '.join(OPTIONAL_MODALITIES)}",
        )
    return tuple(m for m in OPTIONAL_MODALITIES if m in modalities)


@dataclass(frozen=True)
class _Subject:
    """A patient as the optional modalities' writers see it: id, index time, that modality's severity, and the
    sex and age a DICOM header's fake PHI agrees with."""

    patient_id: str
    index_time: datetime
    severity: float
    sex: str
    age: int


def _subjects(cohort: list[PatientTruth], modality: str) -> list[_Subject]:
    return [
        _Subject(p.patient_id, p.index_time, p.severity[modality], p.sex, p.age) for p in cohort if p.present[modality]
    ]


def _prepare_output(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ClinFuseError(f"cannot write to --out {out}: {exc.strerror}", "choose a writable folder") from exc
    for name in (*MODALITY_NAMES, *OPTIONAL_MODALITIES):  # regenerating must not leave files of an earlier cohort
        if (out / name).exists():
            shutil.rmtree(out / name)


def _write_imaging(
    cohort: list[PatientTruth], out: Path, seed: int, rng: np.random.Generator, presentation_rng: np.random.Generator
) -> tuple[dict[str, list[ImageRecord]], dict[str, dict], dict]:
    """Index image (last before the index time) for each imaged patient, plus some priors and follow-ups.

    Returns the files per patient, the index images' truth, and which files present their grey scale otherwise
    (VOI LUT Sequence, SIGMOID) or carry burned-in text (paths relative to `out`)."""
    plans = []  # (patient, acquired, amplitude, is_index)
    for patient in cohort:
        if not patient.present["imaging"]:
            continue
        hours_before = float(rng.uniform(0.5, 36))
        plans.append((patient, patient.index_time - timedelta(hours=hours_before), patient.finding_amplitude, True))
        if rng.random() < PRIOR_STUDY_RATE:
            prior = patient.index_time - timedelta(days=float(rng.uniform(200, 1000)))
            plans.append((patient, prior, 0.3 * patient.finding_amplitude, False))
        if rng.random() < FOLLOW_UP_STUDY_RATE:  # after the index time: must never be used (leakage trap)
            follow_up = patient.index_time + timedelta(days=float(rng.uniform(1, 5)))
            plans.append((patient, follow_up, (1 + patient.label) * (patient.finding_amplitude + 0.3), False))

    folder_numbers = rng.permutation(len(plans)) + 1  # folder names carry no patient identity
    images: dict[str, list[ImageRecord]] = {}
    findings: dict[str, dict] = {}
    presented: dict[str, list[str]] = {"lut_sequence": [], "sigmoid": [], "burned_in": []}
    boxes: dict[str, list[int]] = {}  # where the burned-in text lies, (row0, col0, row1, col1)
    for number, (patient, acquired, amplitude, is_index) in zip(folder_numbers, plans, strict=True):
        rows, cols = (288, 240) if rng.random() < PORTRAIT_RATE else (256, 256)
        canonical, finding = render_radiograph(rows, cols, amplitude, rng)
        presentation = draw_presentation(rows, cols, presentation_rng)
        if is_index:  # the index image stays usable (and its planted finding true): text goes on priors/follow-ups
            presentation = replace(presentation, text=None, burned_in_box=None)
        record = write_radiograph(
            canonical,
            out / "imaging" / f"study_{number:05d}" / "IM0001.dcm",
            fake_header(patient.patient_id, patient.sex, patient.index_time.year - patient.age, rng),
            acquired,
            [str(seed), patient.patient_id, acquired.isoformat()],
            rng,
            presentation,
        )
        images.setdefault(patient.patient_id, []).append(record)
        relative = str(record.path.relative_to(out))
        if presentation.voi != "window":
            presented[presentation.voi].append(relative)
        if presentation.burned_in_box is not None:
            presented["burned_in"].append(relative)
            boxes[relative] = list(presentation.burned_in_box)
        if is_index:
            findings[patient.patient_id] = _finding_truth(record, finding, rows, cols, presentation)
    return images, findings, {"files": {k: sorted(v) for k, v in presented.items()}, "burned_in_boxes": boxes}


def _finding_truth(
    record: ImageRecord, finding: Finding | None, rows: int, cols: int, presentation: Presentation
) -> dict:
    truth: dict = {
        "sop_instance_uid": record.sop_instance_uid, "rows": rows, "cols": cols, "finding": None,
        "voi": presentation.voi, "burned_in": presentation.text is not None,
        "burned_in_box": list(presentation.burned_in_box) if presentation.burned_in_box else None,
    }  # fmt: skip
    if finding is not None:
        r0, c0, r1, c1 = finding.bbox
        truth["finding"] = {
            **asdict(finding),
            "bbox_norm": [round(r0 / rows, 4), round(c0 / cols, 4), round(r1 / rows, 4), round(c1 / cols, 4)],
        }
    return truth


def _demo_config(out: Path, optional: tuple[str, ...], ehr_format: str) -> CohortConfig:
    entries = {
        "imaging": {"kind": "dicom", "name": "imaging", "path": out / "imaging"},
        "genomics": {"kind": "table", "name": "genomics", "path": out / "genomics" / "expression.parquet"},
        # FHIR times carry offsets: they are read into the cohort's zone, UTC like its index times
        "ehr": {"kind": "ehr", "name": "ehr", "path": out / "ehr", "source": ehr_format}
        | ({"timezone": "UTC"} if ehr_format == "fhir" else {}),
        "notes": {"kind": "notes", "name": "notes", "path": out / "notes", "format": "mimic4_note"},
        "ecg": {"kind": "waveform", "name": "ecg", "path": out / "ecg"},
        "ct": {"kind": "dicom", "name": "ct", "path": out / "ct", "volume": True, "window": LUNG_WINDOW},
    }
    return CohortConfig(
        name="clinfuse-demo",
        cohort=CohortTable(path=out / "cohort.csv", sex="sex", age="age"),
        modalities=tuple(entries[name] for name in (*MODALITY_NAMES, *optional)),
    )


def _write_truth(
    path: Path,
    cohort: list[PatientTruth],
    weights: SignalWeights,
    seed: int,
    findings: dict[str, dict],
    gene_loadings: dict[str, float],
    ehr_truth: dict[str, dict],
    optional_truth: dict[str, tuple[dict[str, dict], dict]],
    planted_images: dict,
) -> None:
    truth = {
        "seed": seed,
        "description": "logit = intercept + sum(contributions); contributions are centred per term",
        "weights": asdict(weights),
        "planted": {
            "genes": gene_loadings,
            "diagnoses": list(PLANTED_DIAGNOSES),
            "lab_itemids": sorted(PLANTED_LAB_SHIFTS),
            "leak_diagnoses_after_index": list(LEAK_DIAGNOSES),
            **planted_images,
            **{name: planted for name, (_, planted) in optional_truth.items()},
        },
        "patients": {
            p.patient_id: {
                "label": p.label,
                "logit": p.logit,
                "contributions": p.contributions,
                "present": p.present,
                "dominant_modality": p.dominant_modality,
                "latent": {
                    "finding_amplitude": round(p.finding_amplitude, 6),
                    "gene_score": round(p.gene_score, 6),
                    "ehr_severity": round(p.ehr_severity, 6),
                    **{f"{name}_severity": round(value, 6) for name, value in p.severity.items()},
                },
                "image": findings.get(p.patient_id),
                "ehr": ehr_truth.get(p.patient_id),
                **{name: per_patient.get(p.patient_id) for name, (per_patient, _) in optional_truth.items()},
            }
            for p in cohort
        },
    }
    path.write_text(json.dumps(truth, indent=1, sort_keys=True))
