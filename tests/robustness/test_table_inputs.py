"""Bad cohort tables, genomics tables and EHR events: exit 0 with a counted report, or one `error:` line.

Covers issue 17: +-inf in a genomics table (5), impossible ages (5), 0-byte and otherwise unreadable CSVs (8),
ids such as `NA` or `None` (10a) and same-timestamp EHR events in a reproducible order (10c).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clinfuse.kinds.ehr import events as ehr_events
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.ingest import ingest_ehr
from clinfuse.kinds.table.source import Z_LIMIT, TableAlignment
from clinfuse.platform.ingest.cohort_table import Cohort
from clinfuse.platform.ingest.context import IngestContext
from clinfuse.platform.security import Pseudonymiser

SPLITS = ["train"] * 6 + ["val", "val", "test", "test"]
IDS = [f"P{i}" for i in range(len(SPLITS))]


def _write_cohort(root: Path, ids: list[str] = IDS, ages: list[str] | None = None) -> Path:
    """Ten patients with their own split (no stratified split to satisfy) and a three-gene table."""
    ages = ages or [str(40 + i) for i in range(len(ids))]
    rows = [
        f"{pid},{i % 2},2150-01-01 08:00:00,{split},{age}"
        for i, (pid, split, age) in enumerate(zip(ids, SPLITS, ages, strict=True))
    ]
    (root / "cohort.csv").write_text("patient_id,label,index_time,split,age\n" + "\n".join(rows) + "\n")
    values = np.random.default_rng(0).normal(size=(len(ids), 3))
    genomics = pd.DataFrame(values.round(4), columns=["g1", "g2", "g3"])
    genomics.insert(0, "patient_id", ids)
    genomics.to_csv(root / "genomics.csv", index=False)
    config = root / "cohort.yaml"
    config.write_text(
        "name: tables\ncohort: {path: cohort.csv, split: split, age: age}\n"
        "modalities:\n  - {name: genomics, kind: table, path: genomics.csv}\n"
    )
    return config


def _ingest(probe, config: Path):
    return probe.run_main(["ingest", "--config", str(config), "--out", str(config.parent / "cache")])


def _strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path.name} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _genomics_report(config: Path) -> dict:
    return _strict_json(config.parent / "cache" / "ingest_report.json")["modalities"]["genomics"]


def _assert_finite_outputs(cache: Path) -> None:
    features = pd.read_parquet(cache / "modalities" / "genomics" / "features.parquet")
    assert np.isfinite(features.drop(columns="patient").to_numpy()).all()
    alignment = _strict_json(cache / "modalities" / "genomics" / "alignment.json")
    assert np.isfinite(np.array([alignment["median"], alignment["mean"], alignment["std"]])).all()


# --- non-finite and absurd values ----------------------------------------------------------------------------------


def test_non_finite_table_values_become_missing_and_are_counted_per_feature(probe, tmp_path: Path) -> None:
    config = _write_cohort(tmp_path)
    table = pd.read_csv(tmp_path / "genomics.csv", dtype=str)
    table.loc[1, "g1"], table.loc[2, "g1"], table.loc[3, "g2"], table.loc[4, "g3"] = "inf", "-inf", "1e308", "-Infinity"
    table.to_csv(tmp_path / "genomics.csv", index=False)
    outcome = _ingest(probe, config)
    assert outcome.code == 0, outcome.stderr
    cleaning = _genomics_report(config)["cleaning"]
    assert cleaning["non_finite_cells"] == 4
    assert cleaning["non_finite_cells_by_feature"] == {"g1": 2, "g2": 1, "g3": 1}
    assert _genomics_report(config)["alignment"]["imputed_cells"] == 4  # then imputed like any missing value
    _assert_finite_outputs(tmp_path / "cache")


def test_non_finite_values_of_a_long_table_are_counted_per_feature(probe, tmp_path: Path) -> None:
    config = _write_cohort(tmp_path)
    wide = pd.read_csv(tmp_path / "genomics.csv", dtype=str)
    long = wide.melt(id_vars="patient_id", var_name="feature", value_name="value")
    long.loc[(long["patient_id"] == "P1") & (long["feature"] == "g2"), "value"] = "inf"
    long.to_csv(tmp_path / "genomics.csv", index=False)
    config.write_text(config.read_text().replace("path: genomics.csv}", "path: genomics.csv, layout: long}"))
    outcome = _ingest(probe, config)
    assert outcome.code == 0, outcome.stderr
    assert _genomics_report(config)["cleaning"]["non_finite_cells_by_feature"] == {"g2": 1}
    _assert_finite_outputs(tmp_path / "cache")


def test_a_scoring_value_far_outside_training_is_clipped_finite_and_counted() -> None:
    train = pd.DataFrame({"g": [1.0, 1.0 + 1e-12, 1.0, 1.0 - 1e-12]})  # a tiny but non-zero spread
    values, counts = TableAlignment.fit(train).transform(pd.DataFrame({"g": [1.0, 3e38]}))
    assert np.isfinite(values).all()
    assert values[1, 0] == Z_LIMIT
    assert counts["z_scores_clipped"] == 1


@pytest.mark.parametrize("age", ["inf", "-inf", "-1", "151", "999"])
def test_an_impossible_age_is_one_error_naming_the_column(probe, tmp_path: Path, age: str) -> None:
    config = _write_cohort(tmp_path, ages=["50"] * 3 + [age] + ["60"] * 6)
    probe.assert_user_error(_ingest(probe, config), "age column 'age'", "outside 0-150", "data row 4")
    assert not (tmp_path / "cache").exists()


def test_unknown_or_empty_ages_are_missing(probe, tmp_path: Path) -> None:
    config = _write_cohort(tmp_path, ages=["", "unknown", "0", "150"] + ["60"] * 6)
    assert _ingest(probe, config).code == 0
    ages = pd.read_parquet(tmp_path / "cache" / "cohort.parquet")["age"]
    assert ages.isna().tolist()[:4] == [True, True, False, False]


# --- unreadable files ----------------------------------------------------------------------------------------------

LATIN1 = "patient_id,label,index_time,split,age\nP\xe9,1,2150-01-01,train,40\n".encode("latin-1")
BAD_FILES: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty"),
    "binary": (bytes(range(256)) * 8, "not UTF-8"),
    "latin1": (LATIN1, "not UTF-8"),
    "semicolons": (b"patient_id;label;index_time;split;age;g1\nP0;1;2150-01-01;train;40;1.0\n", "patient_id"),
    "ragged": (
        b"patient_id,label,index_time,split,age\nP0,1,2150-01-01,train,40\nP1,0,2150-01-01,train,40,1\n",
        "line 3",
    ),
    "trailing_fields": (b"patient_id,label,index_time,split,age\nP0,1,2150-01-01,train,40,1\n", "more fields"),
    "duplicate_columns": (b"patient_id,label,index_time,split,age,age,g1,g1\n", "duplicated column"),
}


@pytest.mark.parametrize("target", ["cohort.csv", "genomics.csv"])
@pytest.mark.parametrize("bad", sorted(BAD_FILES))
def test_an_unreadable_table_is_one_error_and_the_previous_cache_is_kept(
    probe, tmp_path: Path, target: str, bad: str
) -> None:
    config = _write_cohort(tmp_path)
    assert _ingest(probe, config).code == 0
    before = probe.snapshot(tmp_path / "cache")
    content, fragment = BAD_FILES[bad]
    (tmp_path / target).write_bytes(content)
    probe.assert_user_error(_ingest(probe, config), target, fragment)
    assert probe.snapshot(tmp_path / "cache") == before


def test_a_damaged_parquet_table_is_one_error(probe, tmp_path: Path) -> None:
    config = _write_cohort(tmp_path)
    pd.read_csv(tmp_path / "genomics.csv").to_parquet(tmp_path / "genomics.parquet")
    config.write_text(config.read_text().replace("genomics.csv", "genomics.parquet"))
    assert _ingest(probe, config).code == 0
    content = (tmp_path / "genomics.parquet").read_bytes()
    (tmp_path / "genomics.parquet").write_bytes(content[: len(content) // 2])
    probe.assert_user_error(_ingest(probe, config), "genomics.parquet", "cannot be read")


@pytest.mark.parametrize("target", ["cohort.csv", "genomics.csv"])
def test_a_table_with_a_header_and_no_rows_is_one_error(probe, tmp_path: Path, target: str) -> None:
    config = _write_cohort(tmp_path)
    header = (tmp_path / target).read_text().splitlines()[0]
    (tmp_path / target).write_text(header + "\n")
    probe.assert_user_error(_ingest(probe, config), target.split(".")[0], "no")


@pytest.mark.parametrize("target", ["cohort.csv", "genomics.csv"])
def test_duplicate_patient_ids_are_one_error(probe, tmp_path: Path, target: str) -> None:
    config = _write_cohort(tmp_path)
    lines = (tmp_path / target).read_text().splitlines()
    (tmp_path / target).write_text("\n".join([*lines, lines[1]]) + "\n")
    probe.assert_user_error(_ingest(probe, config), "duplicated")


def test_huge_labels_or_index_times_are_one_error(probe, tmp_path: Path) -> None:
    config = _write_cohort(tmp_path)
    cohort = tmp_path / "cohort.csv"
    original = cohort.read_text()
    cohort.write_text(original.replace("P3,1,", "P3,1e400,"))
    probe.assert_user_error(_ingest(probe, config), "label")
    cohort.write_text(original.replace("P3,1,2150-01-01 08:00:00", "P3,1,99999-01-01"))
    probe.assert_user_error(_ingest(probe, config), "index time")


# --- patient ids ---------------------------------------------------------------------------------------------------

NA_LIKE_IDS = ["NA", "NULL", "None", "nan", "N/A", "#N/A", "null", "<NA>", "P8", "P9"]


def test_ids_that_pandas_would_read_as_missing_are_ids(probe, tmp_path: Path) -> None:
    config = _write_cohort(tmp_path, ids=NA_LIKE_IDS)
    outcome = _ingest(probe, config)
    assert outcome.code == 0, outcome.stderr
    report = _strict_json(tmp_path / "cache" / "ingest_report.json")
    assert report["cohort"]["patients"] == len(NA_LIKE_IDS)
    assert report["modalities"]["genomics"]["patients_present"] == len(NA_LIKE_IDS)


def test_an_empty_cohort_id_is_still_an_error(probe, tmp_path: Path) -> None:
    config = _write_cohort(tmp_path, ids=["", *IDS[1:]])
    probe.assert_user_error(_ingest(probe, config), "empty patient ids")


def test_table_rows_without_a_patient_id_are_dropped_and_counted(probe, tmp_path: Path) -> None:
    config = _write_cohort(tmp_path)
    genomics = tmp_path / "genomics.csv"
    genomics.write_text(genomics.read_text() + ",1,2,3\n  ,4,5,6\n")
    assert _ingest(probe, config).code == 0
    assert _genomics_report(config)["cleaning"]["rows_without_patient_id"] == 2


# --- EHR events ----------------------------------------------------------------------------------------------------


def _events() -> pd.DataFrame:
    """Ties at one time: two values of one lab, one drug written two ways, two diagnoses."""
    rows = [
        ("A", 2.0, "lab", "LOINC:2160-0 [mg/dL]", 1.1, "mg/dL", "Creatinine"),
        ("A", 2.0, "lab", "LOINC:2160-0 [mg/dL]", 0.9, "mg/dL", "Creatinine"),
        ("A", 2.0, "drug", "DRUG-NAME:aspirin", None, None, "Aspirin"),
        ("A", 2.0, "drug", "DRUG-NAME:aspirin", None, None, "ASPIRIN"),
        ("A", 2.0, "diagnosis", "ICD10CM:I10", None, None, None),
        ("A", 5.0, "diagnosis", "ICD10CM:E119", None, None, None),
        ("B", 1.0, "lab", "LOINC:2160-0 [mg/dL]", 1.4, "mg/dL", "Creatinine"),
        ("B", 1.0, "diagnosis", "ICD10CM:I10", None, None, None),
        ("B", 1.0, "drug", "DRUG-NAME:aspirin", None, None, "Aspirin 81"),
    ]
    columns = ["patient_id", "seconds_before_index", "kind", "code", "value", "unit", "text"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["seconds_before_index"] *= 86400
    return frame


def _ehr_outputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, events: pd.DataFrame, name: str) -> tuple[Path, dict]:
    """ingest_ehr on these events (the source's reading replaced): the folder it wrote and its report."""
    kept = tmp_path / f"{name}-kept.parquet"
    events.to_parquet(kept, index=False)
    read = ehr_events.CohortEvents(kept, set(events["patient_id"]), {"events_left_out": {}})
    monkeypatch.setattr(ehr_events, "cohort_events", lambda *args: read)
    table = pd.DataFrame(
        {"patient_id": ["A", "B"], "label": [0, 1], "index_time": pd.Timestamp("2150-01-01"), "split": "train"}
    )
    modality = EhrModality(name="ehr", kind="ehr", path=tmp_path, min_code_count=1)
    context = IngestContext(pseudonymise=Pseudonymiser(b"k3y-" * 10), scratch=tmp_path, previous=None)
    out = tmp_path / name
    return out, ingest_ehr(modality, Cohort(table=table), out, context).report


def test_same_time_ehr_events_give_identical_outputs_in_any_source_order(monkeypatch, tmp_path: Path) -> None:
    events = _events()
    first, _ = _ehr_outputs(monkeypatch, tmp_path, events, "first")
    for seed in range(3):
        shuffled = events.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        again, _ = _ehr_outputs(monkeypatch, tmp_path, shuffled, f"again-{seed}")
        for path in sorted(first.iterdir()):
            assert (again / path.name).read_bytes() == path.read_bytes(), f"{path.name} depends on the source order"


def test_non_finite_lab_values_are_dropped_and_counted(monkeypatch, tmp_path: Path) -> None:
    events = _events()
    events.loc[0, "value"] = np.inf
    out, report = _ehr_outputs(monkeypatch, tmp_path, events, "ehr")
    assert report["lab_values_non_finite_dropped"] == 1
    alignment = _strict_json(out / "alignment.json")
    assert np.isfinite(alignment["lab_mean"]).all() and np.isfinite(alignment["lab_std"]).all()
    assert np.isfinite(np.load(out / "labs.npy")).all()
    assert np.isfinite(pd.read_parquet(out / "events.parquet")["value"].dropna()).all()


def test_train_runs_on_a_cache_ingested_from_non_finite_values(probe, tmp_path: Path) -> None:
    """Issue 17's probe: the cache held inf, and `train` then failed with a traceback."""
    config = _write_cohort(tmp_path)
    table = pd.read_csv(tmp_path / "genomics.csv", dtype=str)
    table.loc[0, "g1"], table.loc[1, "g2"], table.loc[6, "g3"] = "inf", "-inf", "1e300"
    table.to_csv(tmp_path / "genomics.csv", index=False)
    assert _ingest(probe, config).code == 0
    args = ["train", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--split"]
    outcome = probe.run_main([*args, "--max-epochs", "2"])
    assert outcome.code == 0, outcome.stderr
