"""Ingest an `ehr` modality: events before the index time, vocabulary and lab panel, arrays and timeline.

Events are read back a chunk of patients at a time (`PATIENTS_PER_CHUNK`), so memory follows the feature
arrays rather than the size of the export.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.features import EVENT_ORDER, CodeTexts, EhrAlignment, canonical_events
from clinfuse.platform.ingest.cohort_table import Cohort
from clinfuse.platform.ingest.context import IngestContext, ModalityOutput

ALIGNMENT_FILE = "alignment.json"
EVENTS_FILE = "events.parquet"
CODE_TEXTS_FILE = "code_texts.json"
ARRAY_FILES = ("codes", "code_age_days", "labs", "lab_observed")
PATIENTS_PER_CHUNK = 2000
Chunk = tuple[list[str], pd.DataFrame, int]  # patients, their events in canonical order, non-finite values dropped
TIMELINE_SCHEMA = pa.schema([("patient", pa.string()), ("days_before_index", pa.float64()), ("kind", pa.string()),
                             ("code", pa.string()), ("value", pa.float64()), ("unit", pa.string()),
                             ("text", pa.string())])  # fmt: skip


def ingest_ehr(modality: EhrModality, cohort: Cohort, out: Path, context: IngestContext) -> ModalityOutput:
    from clinfuse.kinds.ehr.events import CohortEvents, cohort_events  # PyHealth/polars only when EHR is ingested

    kept: CohortEvents = cohort_events(modality, cohort.index_times(), context.scratch, context.progress)
    present = [pid for pid in cohort.patient_ids if pid in kept.patients]

    def chunks(patient_ids: list[str]) -> Iterator[Chunk]:
        """Per chunk: its patients, their events in canonical order, and how many non-finite values it dropped."""
        for start in range(0, len(patient_ids), PATIENTS_PER_CHUNK):
            ids = patient_ids[start : start + PATIENTS_PER_CHUNK]
            yield ids, *canonical_events(kept.of(ids))

    if context.alignment is not None:
        alignment = EhrAlignment.from_json(context.alignment)
    else:
        train = cohort.ids_in("train")
        alignment = EhrAlignment.fit((e for _, e, _ in chunks([p for p in present if p in train])),
                                     modality.min_code_count, modality.max_codes)  # fmt: skip
    texts = CodeTexts(alignment.vocabulary, alignment.lab_items)
    arrays, counts, non_finite = _arrays(alignment, present, chunks(present), texts)

    out.mkdir(parents=True, exist_ok=True)
    for name in ARRAY_FILES:
        np.save(out / f"{name}.npy", arrays[name])
    # allow_nan=False: an `Infinity` or `NaN` here would only fail later, in train or score
    (out / ALIGNMENT_FILE).write_text(json.dumps(alignment.to_json(), allow_nan=False))
    (out / CODE_TEXTS_FILE).write_text(json.dumps(texts.texts))
    kinds = _write_timeline(out / EVENTS_FILE, present, chunks, context)
    report = {
        "patients_present": len(present),
        **kept.report,
        "lab_values_non_finite_dropped": non_finite,
        "events_by_kind": dict(sorted(kinds.items())),
        "alignment": counts,
    }
    return ModalityOutput(present_ids=present, report=report, alignment=alignment.to_json())


def _arrays(alignment: EhrAlignment, present: list[str], chunks: Iterator[Chunk], texts: CodeTexts
            ) -> tuple[dict[str, np.ndarray], dict[str, int], int]:  # fmt: skip
    """The feature arrays of `present`, filled chunk by chunk (each chunk's names go to `texts`), the transform's
    counts summed, and the number of non-finite lab values dropped."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ARRAY_FILES}
    counts: Counter[str] = Counter()
    sizes: dict[str, int] = {"vocabulary_size": len(alignment.vocabulary), "lab_items": len(alignment.lab_items)}
    non_finite = 0
    for ids, events, dropped in chunks:
        non_finite += dropped
        texts.add(events)
        arrays, chunk_counts = alignment.transform(events, ids)
        for name in ARRAY_FILES:
            parts[name].append(arrays[name])
        counts.update({k: v for k, v in chunk_counts.items() if k not in sizes})
    if not present:
        empty, _ = alignment.transform(pd.DataFrame(columns=list(EVENT_ORDER)), [])
        return empty, {**sizes, **counts}, 0
    return {name: np.concatenate(parts[name]) for name in ARRAY_FILES}, {**sizes, **counts}, non_finite


def _write_timeline(path: Path, present: list[str], chunks: Callable[[list[str]], Iterator[Chunk]],
                    context: IngestContext) -> Counter[str]:  # fmt: skip
    """The dashboard's timeline: events by pseudonym (so the file's order says nothing about source ids), written
    a chunk of patients at a time; returns the number of events per kind."""
    pseudonyms = {pid: context.pseudonymise(pid) for pid in present}
    by_pseudonym = sorted(present, key=pseudonyms.__getitem__)
    order = ["patient", *EVENT_ORDER[1:]]
    kinds: Counter[str] = Counter()
    with pq.ParquetWriter(path, TIMELINE_SCHEMA) as writer:
        for _, events, _ in chunks(by_pseudonym):
            kinds.update(events["kind"])
            timeline = events.assign(patient=events["patient_id"].map(pseudonyms)).drop(columns=["patient_id"])
            ordered = timeline.sort_values(order, kind="stable", na_position="last")[order]
            writer.write_table(pa.Table.from_pandas(ordered, schema=TIMELINE_SCHEMA, preserve_index=False))
    return kinds
