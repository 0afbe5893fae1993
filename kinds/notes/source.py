"""Read notes into one frame (patient_id, time, storetime, note_type, text) and keep those usable at the index time.

Source files are read in chunks with only the needed columns, and rows of patients outside the cohort are dropped
per chunk: MIMIC-IV-Note's discharge.csv.gz alone is about 330,000 notes (over 1 GB of text). Every dropped note is
counted; no note text, and no cell of the file, ever goes into an error or the report.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from clinfuse.kinds.notes.config import NotesModality
from clinfuse.platform.errors import ClinFuseError

CHUNK_ROWS = 50_000
MIMIC_FILES = ("discharge", "radiology")  # note/<name>.csv(.gz) in MIMIC-IV-Note 2.2
MIMIC_COLUMNS = {"patient_id": "subject_id", "time": "charttime", "storetime": "storetime",
                 "note_type": "note_type", "text": "text"}  # fmt: skip
COLUMNS = ("patient_id", "time", "storetime", "note_type", "text")
UNTYPED = "note"  # the note type of a table without a note type column


def read_notes(config: NotesModality, cohort_ids: set[str], counts: dict[str, int]) -> pd.DataFrame:
    """The notes of cohort patients with text and a readable chart time (canonical columns), counting the rest."""
    where = f"notes modality '{config.name}'"
    frames, outsiders = [], set()
    for path, columns in _sources(config, where):
        for chunk in _chunks(path, columns, where):
            frames.append(_clean(chunk, columns, cohort_ids, counts, outsiders))
    counts["patients_not_in_cohort"] = len(outsiders)
    if not frames:
        return pd.DataFrame({"patient_id": pd.Series(dtype=str), "time": pd.Series(dtype="datetime64[ns]"),
                             "storetime": pd.Series(dtype="datetime64[ns]"), "note_type": pd.Series(dtype=str),
                             "text": pd.Series(dtype=str)})  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def keep_before_index(notes: pd.DataFrame, index_times: dict[str, pd.Timestamp], config: NotesModality,
                      counts: dict[str, int]) -> pd.DataFrame:  # fmt: skip
    """Notes charted, and (where a store time is known) stored, strictly before the patient's index time; of those
    the chosen note types, then the newest `max_notes` per patient, newest first."""
    index = notes["patient_id"].map(index_times)
    charted_before = notes["time"] < index
    stored_before = notes["storetime"].isna() | (notes["storetime"] < index)
    counts["notes_at_or_after_index_excluded"] = int((~charted_before).sum())
    # written before the index time but stored after it: not available to anyone at the index time
    counts["notes_stored_at_or_after_index_excluded"] = int((charted_before & ~stored_before).sum())
    notes = notes[charted_before & stored_before]
    counts["notes_before_index"] = len(notes)
    if config.note_types is not None:
        wanted = notes["note_type"].isin(config.note_types)
        counts["notes_of_other_types_excluded"] = int((~wanted).sum())
        notes = notes[wanted]
    ordered = notes.sort_values(["patient_id", "time", "storetime"], ascending=[True, False, False], kind="stable")
    kept = ordered.groupby("patient_id", sort=False).head(config.max_notes)
    counts["notes_beyond_max_notes_excluded"] = len(ordered) - len(kept)
    counts["notes_used"] = len(kept)
    return kept.reset_index(drop=True)


def _sources(config: NotesModality, where: str) -> list[tuple[Path, dict[str, str]]]:
    """(file, canonical column -> source column) for each file to read."""
    if config.format == "table":
        if not config.path.is_file():
            raise ClinFuseError(f"{where}: {config.path} is not a file", "with format: table, path names one "
                                "CSV/TSV/Parquet file of notes; for a MIMIC-IV-Note folder set format: mimic4_note")
        columns = {c: getattr(config, c) for c in COLUMNS if getattr(config, c) is not None}
        return [(config.path, columns)]
    found = []
    for name in MIMIC_FILES:
        for candidate in (config.path / "note" / f"{name}.csv.gz", config.path / "note" / f"{name}.csv"):
            if candidate.is_file():
                found.append((candidate, MIMIC_COLUMNS))
                break
    if not found:
        raise ClinFuseError(f"{where}: {config.path} holds neither note/discharge.csv(.gz) nor note/radiology.csv(.gz)",
                            "point path at the MIMIC-IV-Note folder (the one holding note/), or use format: table")
    return found


def _chunks(path: Path, columns: dict[str, str], where: str) -> Iterator[pd.DataFrame]:
    """The file's needed columns in chunks (Parquet: row groups' worth at a time via pyarrow batches)."""
    wanted = list(columns.values())
    label = f"{where} ({path.name})"
    try:
        if path.name.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            _check_columns(parquet.schema_arrow.names, columns, label)
            for batch in parquet.iter_batches(batch_size=CHUNK_ROWS, columns=wanted):
                yield batch.to_pandas()
            return
        separator = "\t" if any(path.name.lower().endswith(s) for s in (".tsv", ".tsv.gz", ".txt", ".tab")) else ","
        header = pd.read_csv(path, sep=separator, nrows=0).columns
        _check_columns(list(header), columns, label)
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            yield from pd.read_csv(path, sep=separator, usecols=wanted, dtype=str, keep_default_na=False,
                                   chunksize=CHUNK_ROWS)  # fmt: skip
    except ClinFuseError:
        raise
    except pd.errors.EmptyDataError:
        raise ClinFuseError(f"{label}: the file is empty (no header row)", "export it again with a header") from None
    except UnicodeDecodeError as exc:
        raise ClinFuseError(f"{label}: the file is not UTF-8 text (byte {exc.start} cannot be decoded)",
                            "save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT`") from None  # fmt: skip
    except (pd.errors.ParserError, pd.errors.ParserWarning):  # the parser's message may quote a line of text
        raise ClinFuseError(f"{label}: not a well-formed table", "check the delimiter and the quoting of the "
                            "text column (a note's line breaks and commas must sit inside quotes)") from None
    except (OSError, ValueError) as exc:  # a damaged gzip or Parquet file: the message names no cell
        raise ClinFuseError(f"{label}: cannot be read ({type(exc).__name__})", "check the file and export it again"
                            ) from None  # fmt: skip


def _check_columns(header: list[str], columns: dict[str, str], label: str) -> None:
    missing = [f"{role} '{name}'" for role, name in columns.items() if name not in header]
    if missing:
        raise ClinFuseError(f"{label}: column(s) {', '.join(missing)} not found",
                            f"set those options to columns of the file: {sorted(map(str, header))[:8]}")  # fmt: skip


def _clean(chunk: pd.DataFrame, columns: dict[str, str], cohort_ids: set[str], counts: dict[str, int],
           outsiders: set[str]) -> pd.DataFrame:  # fmt: skip
    """Canonical columns; rows without a patient id or text, with an unreadable chart time, or of patients outside
    the cohort (collected in `outsiders`) are dropped and counted."""
    frame = pd.DataFrame({role: chunk[source] for role, source in columns.items()})
    counts["notes_read"] = counts.get("notes_read", 0) + len(frame)
    ids = frame["patient_id"].astype("string").str.strip()
    text = frame["text"].astype("string")
    empty = ids.isna() | ids.eq("") | text.isna() | text.str.strip().eq("")
    _add(counts, "notes_without_patient_or_text", int(empty.sum()))
    in_cohort = ids.isin(cohort_ids) & ~empty
    _add(counts, "notes_of_patients_not_in_cohort", int((~empty & ~in_cohort).sum()))
    outsiders.update(ids[~empty & ~in_cohort].tolist())
    frame = frame[in_cohort.to_numpy()]
    out = pd.DataFrame({
        "patient_id": ids[in_cohort].astype(str).to_numpy(),
        "time": _times(frame["time"]),
        "storetime": _times(frame["storetime"]) if "storetime" in frame else pd.NaT,
        "note_type": frame["note_type"].astype(str).str.strip().to_numpy() if "note_type" in frame else UNTYPED,
        "text": frame["text"].astype(str).to_numpy(),
    })  # fmt: skip
    unreadable = out["time"].isna()
    _add(counts, "notes_with_unreadable_time", int(unreadable.sum()))
    if "storetime" in frame:
        given = frame["storetime"].astype("string").str.strip().fillna("").ne("").to_numpy()
        _add(counts, "notes_with_unreadable_storetime", int((given & out["storetime"].isna().to_numpy()).sum()))
    return out[~unreadable.to_numpy()]


def _times(column: pd.Series) -> pd.Series:
    """Timestamps without a zone (each wall-clock time kept, as the cohort's index times are); empty -> NaT."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(column.replace("", None), errors="coerce", format="mixed")
    if parsed.dtype == object:  # mixed UTC offsets
        parsed = pd.to_datetime(parsed.map(lambda t: t.replace(tzinfo=None) if getattr(t, "tzinfo", None) else t))
    parsed = parsed.dt.tz_localize(None) if parsed.dt.tz is not None else parsed
    return pd.Series(parsed.to_numpy(), dtype="datetime64[ns]")


def _add(counts: dict, key: str, value: int) -> None:
    counts[key] = counts.get(key, 0) + value
