"""Notes ingest: the index-time and store-time filter, both formats, the frozen alignment, reports without text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clinfuse.kinds.notes.alignment import UNK, NotesAlignment
from clinfuse.kinds.notes.ingest import ingest_notes
from clinfuse.platform.errors import ClinFuseError

INDEX = "2150-06-01 12:00:00"


def small_table(path: Path) -> Path:
    rows = [  # patient, charttime, storetime, type, text
        ("a", "2150-05-01 08:00:00", "2150-05-01 09:00:00", "DS", "Denies dyspnea. Plan discussed."),
        ("a", "2150-05-20 08:00:00", "", "RR", "Right lower lobe consolidation."),  # no store time: charttime rules
        ("a", "2150-06-01 12:00:00", "2150-06-01 13:00:00", "DS", "Leakword at the index time."),
        ("a", "2150-06-01 10:00:00", "2150-06-02 09:00:00", "DS", "Storedlate summary."),  # stored after index
        ("b", "2150-05-30 08:00:00", "2150-05-30 09:00:00", "DS", "Elevated troponin noted."),
        ("b", "2150-07-01 08:00:00", "2150-07-01 09:00:00", "DS", "Leakword after."),
        ("c", "2150-06-02 08:00:00", "2150-06-02 09:00:00", "DS", "Only after the index."),
        ("stranger", "2150-05-01 08:00:00", "2150-05-01 09:00:00", "DS", "Not in the cohort."),
        ("b", "not a time", "", "DS", "Unreadable time."),
        ("", "2150-05-01 08:00:00", "", "DS", "No patient."),
    ]
    table = pd.DataFrame(rows, columns=["pid", "when", "stored", "kind", "body"])
    table.to_csv(path, index=False)
    return path


def test_index_and_store_time_filter(tmp_path: Path, kit) -> None:
    config = kit.notes_config(small_table(tmp_path / "notes.csv"), patient_id="pid", time="when", storetime="stored",
                              note_type="kind", text="body", min_token_count=1)  # fmt: skip
    cohort = kit.cohort_of(["a", "b", "c", "d"], [INDEX] * 4, ["train", "train", "val", "test"])
    output = ingest_notes(config, cohort, tmp_path / "out", kit.context(tmp_path))
    report = output.report
    assert output.present_ids == ["a", "b"]
    assert output.patient_issues == {"c": "no note charted and stored before the index time"}
    assert report["notes_read"] == 10
    assert report["notes_at_or_after_index_excluded"] == 3  # at the index time, and two after it
    assert report["notes_stored_at_or_after_index_excluded"] == 1
    assert report["notes_of_patients_not_in_cohort"] == 1 and report["patients_not_in_cohort"] == 1
    assert report["notes_with_unreadable_time"] == 1 and report["notes_without_patient_or_text"] == 1
    assert report["notes_before_index"] == report["notes_used"] == 3
    vocabulary = NotesAlignment.from_json(output.alignment).vocabulary
    assert "leakword" not in vocabulary and "storedlate" not in vocabulary
    assert {"dyspnea", "consolidation", "troponin", "[type:ds]", "[type:rr]"} <= set(vocabulary)
    tokens = np.load(tmp_path / "out" / "tokens.npy")
    first = [vocabulary[i] for i in tokens[0] if i]  # newest note first, each after its type marker
    assert first[:3] == ["[type:rr]", "right", "lower"] and first[6] == "[type:ds]"
    assert np.load(tmp_path / "out" / "lengths.npy").tolist() == [len(first), int((tokens[1] > 0).sum())]


def test_note_types_and_max_notes(tmp_path: Path, kit) -> None:
    path = small_table(tmp_path / "notes.csv")
    common = {"patient_id": "pid", "time": "when", "storetime": "stored", "note_type": "kind", "text": "body"}
    cohort = kit.cohort_of(["a", "b"], [INDEX] * 2, ["train", "train"])
    only_ds = ingest_notes(kit.notes_config(path, note_types=["DS"], **common), cohort, tmp_path / "ds",
                           kit.context(tmp_path))  # fmt: skip
    assert only_ds.report["notes_of_other_types_excluded"] == 1 and only_ds.report["notes_used"] == 2
    newest = ingest_notes(kit.notes_config(path, max_notes=1, **common), cohort, tmp_path / "one",
                          kit.context(tmp_path))  # fmt: skip
    assert newest.report["notes_beyond_max_notes_excluded"] == 1
    assert pd.read_parquet(tmp_path / "one" / "notes.parquet")["note_type"].tolist().count("RR") == 1  # a's newest


def test_mimic_and_table_formats_give_the_same_tokens(demo_notes, demo_ingested, tmp_path: Path, kit) -> None:
    folder, mimic = demo_ingested
    table = pd.concat([pd.read_csv(demo_notes.root / "note" / f"{name}.csv.gz", dtype=str, keep_default_na=False)
                       for name in ("discharge", "radiology")])  # fmt: skip
    table = table.rename(columns={"subject_id": "patient", "charttime": "written"}).sample(frac=1, random_state=0)
    table.to_parquet(tmp_path / "notes.parquet", index=False)
    config = kit.notes_config(tmp_path / "notes.parquet", patient_id="patient", time="written", storetime="storetime",
                              max_tokens=256, min_token_count=2)  # fmt: skip
    output = ingest_notes(config, demo_notes.cohort, tmp_path / "out", kit.context(tmp_path))
    assert output.present_ids == mimic.present_ids
    assert output.alignment == mimic.alignment
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "tokens.npy"), np.load(folder / "tokens.npy"))


def test_scoring_applies_the_frozen_alignment(demo_ingested, tmp_path: Path, kit) -> None:
    _, trained = demo_ingested
    path = tmp_path / "score.csv"
    pd.DataFrame({"patient_id": ["s1", "s2"], "charttime": ["2150-01-01", "2150-01-02"], "note_type": ["DS", "ZZ"],
                  "text": ["Elevated troponin with zqxwv florbnik.", "Denies dyspnea."]}).to_csv(path, index=False)
    cohort = kit.cohort_of(["s1", "s2"], [INDEX] * 2, ["score", "score"])
    output = ingest_notes(kit.notes_config(path), cohort, tmp_path / "out", kit.context(tmp_path, trained.alignment))
    assert output.alignment == trained.alignment  # applied, never refitted
    vocabulary = NotesAlignment.from_json(trained.alignment).vocabulary
    tokens = np.load(tmp_path / "out" / "tokens.npy")
    assert tokens.shape == (2, 256)  # the model's max_tokens, not the config's default
    words = [vocabulary[i] for i in tokens[0] if i]
    assert words == ["[type:ds]", "elevated", "troponin", "with", UNK, UNK, "."]
    assert vocabulary[tokens[1][0]] == "[type:other]"  # a note type the model never saw


def test_report_and_errors_never_hold_note_text(demo_notes, demo_ingested, tmp_path: Path, kit) -> None:
    _, output = demo_ingested
    assert all(isinstance(v, int | float) for v in output.report.values())  # counts only: no strings at all
    report = json.dumps(output.report) + json.dumps(output.patient_issues)
    phrases = demo_notes.summary["phrases"] + demo_notes.summary["negations"] + demo_notes.summary["leak_phrases"]
    assert not [p for p in phrases if p in report.lower()]
    # a malformed file: the parser's own message would quote the offending line
    bad = tmp_path / "bad.csv"
    bad.write_text('patient_id,charttime,note_type,text\n1,2150-01-01,DS,"secretword, a quote never closed\n')
    cohort = kit.cohort_of(["1"], [INDEX], ["train"])
    with pytest.raises(ClinFuseError) as raised:
        ingest_notes(kit.notes_config(bad), cohort, tmp_path / "out", kit.context(tmp_path))
    assert "secretword" not in str(raised.value) and "not a well-formed table" in str(raised.value)


@pytest.mark.parametrize(("setup", "message"), [
    ("folder_as_table", "is not a file"),
    ("missing_column", "column(s) text 'text' not found"),
    ("empty_mimic_folder", "holds neither note/discharge.csv"),
])  # fmt: skip
def test_source_errors(setup: str, message: str, tmp_path: Path, kit) -> None:
    fields = {}
    if setup == "folder_as_table":
        path = tmp_path
    elif setup == "missing_column":
        path = tmp_path / "notes.tsv"
        path.write_text("patient_id\tcharttime\tnote_type\tbody\n1\t2150-01-01\tDS\tx\n")
    else:
        path, fields = tmp_path, {"format": "mimic4_note"}
    cohort = kit.cohort_of(["1"], [INDEX], ["train"])
    with pytest.raises(ClinFuseError, match=re.escape(message)):
        ingest_notes(kit.notes_config(path, **fields), cohort, tmp_path / "out", kit.context(tmp_path))


def test_ingested_files_are_keyed_by_pseudonym(demo_notes, demo_ingested, kit) -> None:
    folder, output = demo_ingested
    spans = pd.read_parquet(folder / "token_spans.parquet")
    notes = pd.read_parquet(folder / "notes.parquet")
    source_ids = set(output.present_ids)
    assert not source_ids & (set(spans["patient"]) | set(notes["patient"]))
    pseudonym = kit.context(folder).pseudonymise(output.present_ids[0])
    tokens = np.load(folder / "tokens.npy")[0]
    mine = spans[spans["patient"] == pseudonym]
    assert len(mine) == int((tokens > 0).sum())
    vocabulary = NotesAlignment.from_json(output.alignment).vocabulary
    text = notes[(notes["patient"] == pseudonym) & (notes["note"] == 0)]["text"].iloc[0]
    word = mine[(mine["note"] == 0) & (mine["start"] >= 0)].iloc[0]
    assert text[word["start"]:word["end"]].lower() == vocabulary[tokens[int(word["position"])]]
