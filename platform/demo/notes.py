"""Clinical notes in the MIMIC-IV-Note layout (note/discharge.csv.gz, note/radiology.csv.gz) for the demo cohort.

Templated but varied notes (section headers, vitals, medication lists, noise sentences, typos) before each
patient's index time. Planted findings appear more often the higher the patient's severity; their negations
("no evidence of consolidation", "denies dyspnea") share the same words, appear more often at low severity and
carry no risk, so only a model that reads the words' context (n-grams) separates them. Two leakage traps hold
outcome words: notes charted after the index time, and discharge summaries charted before it but stored after it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from clinfuse.platform.demo.tables import write_csv_deterministic

_TIME = "%Y-%m-%d %H:%M:%S"
# finding -> (planted phrase, its negation); the words of a pair overlap on purpose
FINDINGS = {
    "consolidation": ("right lower lobe consolidation", "no evidence of consolidation"),
    "dyspnea": ("worsening dyspnea on exertion", "denies dyspnea"),
    "troponin": ("elevated troponin", "troponin negative"),
    "effusion": ("bilateral pleural effusions", "no pleural effusion"),
    "oxygen": ("new oxygen requirement", "no oxygen requirement"),
}
SIGNAL_TOKENS = ["consolidation", "dyspnea", "troponin", "effusions", "oxygen", "worsening", "elevated", "bilateral"]
LEAK_PHRASES = ("transferred to the icu and intubated", "expired despite resuscitation", "code blue called")
COMPLAINTS = ("chest pain", "cough", "fatigue", "fever", "abdominal pain", "dizziness", "leg swelling", "syncope")
HISTORY = ("hypertension", "type 2 diabetes", "hyperlipidemia", "copd", "atrial fibrillation", "ckd stage 3",
           "hypothyroidism", "gerd", "osteoarthritis", "depression")  # fmt: skip
MEDICATIONS = ("lisinopril 10 mg daily", "metformin 500 mg bid", "atorvastatin 40 mg qhs", "aspirin 81 mg daily",
               "metoprolol succinate 25 mg daily", "levothyroxine 50 mcg daily", "omeprazole 20 mg daily",
               "apixaban 5 mg bid", "furosemide 20 mg daily", "sertraline 50 mg daily")  # fmt: skip
NOISE = ("Patient seen and examined at bedside.", "Family at bedside and updated on the plan.",
         "Tolerating a regular diet.", "Ambulating with a walker.", "Pain controlled with acetaminophen.",
         "Social work consulted for discharge planning.", "Physical therapy recommends home with services.",
         "Follow up with primary care in one to two weeks.", "Labs reviewed and discussed with the team.",
         "Sleeping well overnight.", "Lines and tubes reviewed.", "Patient agrees with the plan of care.")  # fmt: skip
RADIOLOGY_NOISE = ("Cardiomediastinal silhouette is within normal limits.", "No pneumothorax.",
                   "Osseous structures are unremarkable.", "Comparison is made to the prior study.",
                   "Lines and tubes are in standard position.", "Mild degenerative changes of the spine.")  # fmt: skip


class NoteSubject(Protocol):
    patient_id: str
    index_time: datetime
    severity: float


def write_notes(subjects: list[NoteSubject], root: Path, rng: np.random.Generator) -> tuple[dict[str, dict], dict]:
    """Write the notes of `subjects` under `root`; return per patient the truth, and the global phrase lists."""
    discharge, radiology, truth = [], [], {}
    for number, subject in enumerate(subjects):
        truth[subject.patient_id] = _write_patient(subject, number, discharge, radiology, rng)
    (root / "note").mkdir(parents=True, exist_ok=True)
    columns = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]
    write_csv_deterministic(pd.DataFrame(discharge, columns=columns), root / "note" / "discharge.csv.gz")
    write_csv_deterministic(pd.DataFrame(radiology, columns=columns), root / "note" / "radiology.csv.gz")
    summary = {"phrases": [p for p, _ in FINDINGS.values()], "negations": [n for _, n in FINDINGS.values()],
               "leak_phrases": list(LEAK_PHRASES), "tokens": SIGNAL_TOKENS}  # fmt: skip
    return truth, summary


def _write_patient(subject: NoteSubject, number: int, discharge: list, radiology: list,
                   rng: np.random.Generator) -> dict:  # fmt: skip
    severity = float(subject.severity)
    p_planted = _sigmoid(-1.6 + 1.4 * severity)
    p_negated = _sigmoid(-0.6 - 1.2 * severity)
    planted, negated = set(), set()
    n_notes = 2 + int(rng.integers(0, 5))
    days_before = np.sort(rng.uniform(1, 3 * 365, size=n_notes))[::-1]
    hadm = 20_000_000 + 10 * number
    for seq, days in enumerate(days_before, start=1):
        charttime = subject.index_time - timedelta(days=float(days), hours=float(rng.uniform(0, 12)))
        found = [f for f in FINDINGS if rng.random() < p_planted]
        denied = [f for f in FINDINGS if f not in found and rng.random() < p_negated]
        planted.update(found)
        negated.update(denied)
        radiology_note = rng.random() < 0.4
        text = (_radiology if radiology_note else _discharge)(found, denied, (), rng)
        stored = charttime + timedelta(hours=float(rng.uniform(0.2, 6)))
        _append(radiology if radiology_note else discharge, subject, hadm + seq, seq, charttime, stored, text,
                radiology_note)  # fmt: skip
    after = 0
    if rng.random() < 0.6:  # charted after the index time: outcome words the model must never see
        after += 1
        charttime = subject.index_time + timedelta(hours=float(rng.uniform(1, 96)))
        leaks = tuple(p for p in LEAK_PHRASES if rng.random() < _sigmoid(-0.5 + 1.5 * severity))
        _append(discharge, subject, hadm + 9, n_notes + 1, charttime, charttime + timedelta(hours=2),
                _discharge(list(FINDINGS), [], leaks, rng), False)  # fmt: skip
    stored_after = 0
    if rng.random() < 0.3:  # charted just before the index time, stored after it: not available then either
        stored_after += 1
        charttime = subject.index_time - timedelta(hours=float(rng.uniform(0.5, 6)))
        leaks = tuple(p for p in LEAK_PHRASES if rng.random() < _sigmoid(-0.5 + 1.5 * severity))
        _append(discharge, subject, hadm + 8, n_notes + 2, charttime, subject.index_time + timedelta(days=2),
                _discharge(list(FINDINGS), [], leaks, rng), False)  # fmt: skip
    return {"planted": sorted(FINDINGS[f][0] for f in planted), "negated": sorted(FINDINGS[f][1] for f in negated),
            "notes": n_notes, "leakage_notes_after_index": after,
            "leakage_notes_stored_after_index": stored_after}  # fmt: skip


def _append(table: list, subject: NoteSubject, hadm: int, seq: int, charttime: datetime, stored: datetime,
            text: str, radiology_note: bool) -> None:  # fmt: skip
    kind = "RR" if radiology_note else "DS"
    table.append({"note_id": f"{subject.patient_id}-{kind}-{seq}", "subject_id": subject.patient_id,
                  "hadm_id": hadm, "note_type": kind, "note_seq": seq, "charttime": charttime.strftime(_TIME),
                  "storetime": stored.strftime(_TIME), "text": text})  # fmt: skip


def _discharge(found: list[str], denied: list[str], leaks: tuple[str, ...], rng: np.random.Generator) -> str:
    history = ", ".join(_pick(HISTORY, int(rng.integers(1, 4)), rng))
    complaint = _pick(COMPLAINTS, 1, rng)[0]
    course = _sentences(NOISE, int(rng.integers(2, 5)), rng) + _findings(found, denied, "Notable for")
    rng.shuffle(course)
    vitals = (f"T {rng.normal(37.0, 0.5):.1f} HR {int(rng.normal(85, 12))} BP {int(rng.normal(128, 15))}/"
              f"{int(rng.normal(76, 9))} RR {int(rng.normal(17, 3))} "
              f"SpO2 {min(100, int(rng.normal(95, 2)))}% RA")  # fmt: skip
    medications = "\n".join(f"{i}. {m}" for i, m in enumerate(_pick(MEDICATIONS, int(rng.integers(2, 6)), rng), 1))
    sections = [
        f"Chief Complaint:\n{complaint}",
        "History of Present Illness:\n"
        + _typos(f"Patient with a history of {history} presents with {complaint}.", rng),
        f"Physical Exam:\nVitals: {vitals}",
        "Brief Hospital Course:\n" + " ".join(_typos(s, rng) if not _planted(s) else s for s in course),
        f"Medications on Admission:\n{medications}",
    ]
    if leaks:
        sections.append("Addendum:\n" + ". ".join(leaks).capitalize() + ".")
    sections.append(f"Discharge Condition:\n{_pick(('stable', 'good', 'fair'), 1, rng)[0]}")
    return "\n\n".join(sections)


def _radiology(found: list[str], denied: list[str], leaks: tuple[str, ...], rng: np.random.Generator) -> str:
    findings = _findings(found, denied, "There is")
    body = _sentences(RADIOLOGY_NOISE, int(rng.integers(1, 4)), rng) + findings
    rng.shuffle(body)
    impression = findings[0] if findings else "No acute cardiopulmonary process."
    return (f"EXAMINATION: CHEST ({_pick(('PA AND LAT', 'PORTABLE AP', 'PA'), 1, rng)[0]})\n\n"
            f"INDICATION: {_pick(COMPLAINTS, 1, rng)[0]}\n\nFINDINGS:\n{' '.join(body)}\n\n"
            f"IMPRESSION:\n{impression}")  # fmt: skip


def _findings(found: list[str], denied: list[str], lead: str) -> list[str]:
    """One sentence per planted finding ("There is elevated troponin.") and per negation ("Troponin negative.")."""
    return [f"{lead} {FINDINGS[f][0]}." for f in found] + [f"{FINDINGS[f][1].capitalize()}." for f in denied]


def _planted(sentence: str) -> bool:
    return any(p in sentence or n in sentence for p, n in FINDINGS.values())


def _typos(sentence: str, rng: np.random.Generator, rate: float = 0.04) -> str:
    """Swap two adjacent letters in a few words, as hurried typing does (planted phrases are kept intact)."""
    words = sentence.split(" ")
    for i, word in enumerate(words):
        if len(word) > 4 and rng.random() < rate:
            j = int(rng.integers(1, len(word) - 2))
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    return " ".join(words)


def _pick(options: tuple[str, ...], k: int, rng: np.random.Generator) -> list[str]:
    return [options[i] for i in rng.choice(len(options), size=k, replace=False)]


def _sentences(options: tuple[str, ...], k: int, rng: np.random.Generator) -> list[str]:
    return _pick(options, min(k, len(options)), rng)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))
