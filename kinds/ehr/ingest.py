"""Ingest an `ehr` modality: events before the index time, vocabulary and lab panel, arrays and timeline."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.features import EVENT_ORDER, EhrAlignment, canonical_events, code_texts
from clinfuse.platform.ingest.cohort_table import Cohort
from clinfuse.platform.ingest.context import IngestContext, ModalityOutput

ALIGNMENT_FILE = "alignment.json"
EVENTS_FILE = "events.parquet"
CODE_TEXTS_FILE = "code_texts.json"
ARRAY_FILES = ("codes", "code_age_days", "labs", "lab_observed")


def ingest_ehr(modality: EhrModality, cohort: Cohort, out: Path, context: IngestContext) -> ModalityOutput:
    from clinfuse.kinds.ehr.source import load_ehr_events  # PyHealth/polars only when EHR is ingested

    loaded, excluded = load_ehr_events(modality, cohort.index_times(), context.scratch, context.progress)
    events, non_finite = canonical_events(loaded)
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
    # allow_nan=False: an `Infinity` or `NaN` here would only fail later, in train or score
    (out / ALIGNMENT_FILE).write_text(json.dumps(alignment.to_json(), allow_nan=False))
    (out / CODE_TEXTS_FILE).write_text(json.dumps(code_texts(alignment.vocabulary, events)))
    timeline = events[events["patient_id"].isin(present)].assign(
        patient=lambda f: f["patient_id"].map(context.pseudonymise)
    )
    order = ["patient", *EVENT_ORDER[1:]]  # by pseudonym, so the file's order says nothing about source ids
    timeline.drop(columns=["patient_id"]).sort_values(order, kind="stable", na_position="last").to_parquet(
        out / EVENTS_FILE, index=False
    )
    report = {
        "patients_present": len(present),
        "events_before_index": int(len(events)),
        "events_at_or_after_index_excluded": excluded,
        "lab_values_non_finite_dropped": non_finite,
        "events_by_kind": dict(Counter(events["kind"])),
        "alignment": counts,
    }
    return ModalityOutput(present_ids=present, report=report, alignment=alignment.to_json())
