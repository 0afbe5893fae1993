"""Ingest a `notes` modality: notes usable at the index time -> token ids, the dashboard's texts, the alignment.

Files written in `out`:
    tokens.npy          (patients, max_tokens) int64 token ids, right-padded with 0 ([PAD])
    lengths.npy         (patients,) int64 tokens used
    notes.parquet       patient (pseudonym), note (0 = newest), note_type, charttime, text: the notes as read, for
                        the dashboard's highlighted text (the cache holds patient data, as the images are)
    token_spans.parquet patient, position, note, start, end: where each token lies in its note (markers: -1)
    alignment.json      the tokenizer and TF-IDF statistics fitted on the training patients
The report holds counts only: never a note's text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from clinfuse.kinds.notes.alignment import NotesAlignment, unknown_share
from clinfuse.kinds.notes.config import NotesModality
from clinfuse.kinds.notes.source import keep_before_index, read_notes
from clinfuse.platform.ingest.context import IngestContext, ModalityOutput

if TYPE_CHECKING:
    from clinfuse.platform.ingest.cohort_table import Cohort

ALIGNMENT_FILE = "alignment.json"
NOTES_FILE = "notes.parquet"
SPANS_FILE = "token_spans.parquet"


def ingest_notes(config: NotesModality, cohort: Cohort, out: Path, context: IngestContext) -> ModalityOutput:
    counts: dict[str, int] = {}
    notes = read_notes(config, set(cohort.patient_ids), counts)
    with_notes = set(notes["patient_id"])
    notes = keep_before_index(notes, cohort.index_times(), config, counts)
    usable = set(notes["patient_id"])
    present = [pid for pid in cohort.patient_ids if pid in usable]
    issues = {pid: "no note charted and stored before the index time" for pid in with_notes - usable}
    if context.alignment is not None:
        alignment = NotesAlignment.from_json(context.alignment)
    else:
        train = notes[notes["patient_id"].isin(cohort.ids_in("train"))]
        alignment = NotesAlignment.fit(train, config.max_tokens, config.vocabulary_size, config.min_token_count)
    encoded = alignment.encode(notes)
    tokens, lengths = encoded.padded(present, alignment.max_tokens)

    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "tokens.npy", tokens)
    np.save(out / "lengths.npy", lengths)
    (out / ALIGNMENT_FILE).write_text(json.dumps(alignment.to_json(), allow_nan=False))
    _write_texts(notes, encoded.spans, present, out, context)
    truncated = np.array([encoded.truncated[pid] for pid in present], np.int64)
    report = {
        "patients_present": len(present),
        **{key: counts.get(key, 0) for key in sorted(counts)},
        "patients_without_notes_before_index": len(issues),
        "tokens_per_patient_mean": round(float(lengths.mean()), 1) if len(present) else 0.0,
        "tokens_truncated": int(truncated.sum()),
        "patients_truncated": int((truncated > 0).sum()),
        "unknown_token_share": unknown_share(tokens),
        "vocabulary_size": alignment.vocabulary_size,
        "training_patients_with_notes": alignment.n_documents,
    }
    return ModalityOutput(present_ids=present, report=report, alignment=alignment.to_json(), patient_issues=issues)


def _write_texts(notes: pd.DataFrame, spans: dict[str, np.ndarray], present: list[str], out: Path,
                 context: IngestContext) -> None:  # fmt: skip
    """The notes that reached the tokens, and every token's place in them, keyed by pseudonym (sorted by it, so
    the files' order says nothing about source ids)."""
    pseudonym = {pid: context.pseudonymise(pid) for pid in present}
    used = {pid: int(s[:, 0].max()) + 1 if len(s) else 0 for pid, s in spans.items()}
    kept = notes[notes["patient_id"].isin(pseudonym)].copy()
    kept["note"] = kept.groupby("patient_id", sort=False).cumcount()
    kept = kept[kept["note"] < kept["patient_id"].map(used)]
    texts = pd.DataFrame({"patient": kept["patient_id"].map(pseudonym), "note": kept["note"].astype("int32"),
                          "note_type": kept["note_type"], "charttime": kept["time"], "text": kept["text"]})  # fmt: skip
    texts.sort_values(["patient", "note"]).to_parquet(out / NOTES_FILE, index=False)
    frames = []
    for pid in present:
        span = spans[pid]
        frames.append(pd.DataFrame({"patient": pseudonym[pid], "position": np.arange(len(span), dtype=np.int32),
                                    "note": span[:, 0].astype(np.int32), "start": span[:, 1].astype(np.int32),
                                    "end": span[:, 2].astype(np.int32)}))  # fmt: skip
    columns = {"patient": [], "position": [], "note": [], "start": [], "end": []}
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns)
    table.sort_values(["patient", "position"]).to_parquet(out / SPANS_FILE, index=False)
