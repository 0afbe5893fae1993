"""Ingest an `ehr` modality: events before the index time, vocabulary and lab panel, arrays and timeline."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from clinfuse.platform.config import EhrModality
from clinfuse.platform.ingest.cohort_table import Cohort
from clinfuse.platform.ingest.context import IngestContext, ModalityOutput
from clinfuse.platform.ingest.ehr_features import EhrAlignment, code_texts

ALIGNMENT_FILE = "alignment.json"
EVENTS_FILE = "events.parquet"
CODE_TEXTS_FILE = "code_texts.json"
ARRAY_FILES = ("codes", "code_age_days", "labs", "lab_observed")


def ingest_ehr(modality: EhrModality, cohort: Cohort, out: Path, context: IngestContext) -> ModalityOutput:
    from clinfuse.platform.ingest.ehr_source import load_ehr_events  # PyHealth/polars only when EHR is ingested

    events, excluded = load_ehr_events(modality, cohort.index_times(), context.scratch, context.progress)
    present = [pid for pid in cohort.patient_ids if pid in set(events["patient_id"])]
    if context.alignment is not None:
        alignment = EhrAlignment.from_json(context.alignment)
    else:
        train_events = events[events["patient_id"].isin(cohort.ids_in("train"))]
        alignment = EhrAlignment.fit(train_events, modality.min_code_count, modality.max_codes)
    arrays, counts = alignment.transform(events, present)

    out.mkdir(parents=True, exist_ok=True)
    for name in ARRAY_FILES:
        np.save(out / f"{name}.npy", arrays[name])
    (out / ALIGNMENT_FILE).write_text(json.dumps(alignment.to_json()))
    (out / CODE_TEXTS_FILE).write_text(json.dumps(code_texts(alignment.vocabulary, events)))
    timeline = events[events["patient_id"].isin(present)].assign(
        patient=lambda f: f["patient_id"].map(context.pseudonymise)
    )
    timeline.drop(columns=["patient_id"]).sort_values(["patient", "days_before_index", "kind", "code"]).to_parquet(
        out / EVENTS_FILE, index=False
    )
    report = {
        "patients_present": len(present),
        "events_before_index": int(len(events)),
        "events_at_or_after_index_excluded": excluded,
        "events_by_kind": dict(Counter(events["kind"])),
        "alignment": counts,
    }
    return ModalityOutput(present_ids=present, report=report, alignment=alignment.to_json())
