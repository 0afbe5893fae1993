"""The demo notes writer, the dashboard's highlighted text, and the kind's static conformance."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from clinfuse.kinds.notes import NotesKind
from clinfuse.kinds.notes.section import highlighted, patient_texts
from clinfuse.platform.demo.notes import write_notes
from clinfuse.platform.kinds import SectionData, check_kind


def digest(root: Path) -> str:
    return hashlib.sha256(b"".join((root / "note" / f"{n}.csv.gz").read_bytes()
                                   for n in ("discharge", "radiology"))).hexdigest()  # fmt: skip


def test_demo_writer_is_deterministic(tmp_path: Path, kit) -> None:
    people = kit.subjects(40, seed=3)
    first = write_notes(people, tmp_path / "a", np.random.default_rng(9))
    second = write_notes(people, tmp_path / "b", np.random.default_rng(9))
    assert first == second and digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(write_notes(people, tmp_path / "c", np.random.default_rng(10)) and
                                            tmp_path / "c")  # fmt: skip


def test_demo_notes_plant_findings_by_severity_with_negations_and_leaks(demo_notes) -> None:
    truth, summary, people = demo_notes.truth, demo_notes.summary, demo_notes.subjects
    notes = pd.concat([pd.read_csv(demo_notes.root / "note" / f"{n}.csv.gz") for n in ("discharge", "radiology")])
    assert set(notes["note_type"]) == {"DS", "RR"} and list(notes.columns) == [
        "note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]
    severity = np.array([p.severity for p in people])
    planted = np.array([len(truth[p.patient_id]["planted"]) for p in people])
    negated = np.array([len(truth[p.patient_id]["negated"]) for p in people])
    assert np.corrcoef(severity, planted)[0, 1] > 0.3 and np.corrcoef(severity, negated)[0, 1] < -0.3
    text = " ".join(notes["text"]).lower()
    assert all(n.lower() in text for n in summary["negations"]) and all(p in text for p in summary["phrases"])
    index = {p.patient_id: p.index_time for p in people}
    after = pd.to_datetime(notes["charttime"]) >= notes["subject_id"].astype(str).map(index)
    stored_after = pd.to_datetime(notes["storetime"]) >= notes["subject_id"].astype(str).map(index)
    assert after.sum() == sum(t["leakage_notes_after_index"] for t in truth.values()) > 0
    assert (stored_after & ~after).sum() == sum(t["leakage_notes_stored_after_index"] for t in truth.values()) > 0
    for p in people:  # the notes before the index time hold exactly the planted and negated phrases of the truth
        before = " ".join(notes[(notes["subject_id"].astype(str) == p.patient_id) & ~stored_after]["text"]).lower()
        assert [x for x in summary["phrases"] if x in before] == [x for x in summary["phrases"]
                                                                  if x in truth[p.patient_id]["planted"]]  # fmt: skip


def test_highlighted_text_escapes_and_shades() -> None:
    text = "No <script>alert(1)</script> & consolidation"
    spans = pd.DataFrame({"position": [0, 1, 2, 3], "note": 0, "start": [-1, 0, 3, 31], "end": [-1, 2, 11, 44]})
    out = highlighted(text, spans, [0.0, -0.5, 0.1, 1.0])
    assert "<script>" not in out and "&lt;script&gt;" in out and "&amp;" in out
    assert 'rgba(36, 113, 163, 0.425); border-radius: 3px">No</span>' in out  # blue, half the peak
    assert 'rgba(192, 57, 43, 0.85); border-radius: 3px">consolidation</span>' in out  # red, the peak
    assert highlighted("abc def", pd.DataFrame({"position": [0], "start": [0], "end": [3]}), [1.0]).endswith(
        "abc</span> …</div>")  # text past the last read token is cut


def test_section_reads_one_patients_notes(demo_ingested, kit) -> None:
    folder, output = demo_ingested
    patient = kit.context(folder).pseudonymise(output.present_ids[3])
    section = SectionData("notes", patient, 3, kit.FolderCache(folder), {"top": [], "detail": {"tokens": []}})
    notes, spans = patient_texts(section)
    assert set(notes["patient"]) == set(spans["patient"]) == {patient}
    assert notes["note"].tolist() == list(range(len(notes))) and len(spans) == int((np.load(folder / "tokens.npy")[3]
                                                                                     > 0).sum())  # fmt: skip


def test_kind_passes_the_static_checks() -> None:
    check_kind(NotesKind())
