"""The shared event pipeline over hand-made OMOP and MEDS exports: code systems, units kept apart, and every
left-out event counted by reason (no time, unknown system, no value, after the index time, outside the cohort)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clinfuse.kinds.ehr.codes import icd9_to_icd10_gem, icd_titles
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.events import (
    AFTER_INDEX,
    NO_TIME,
    NO_VALUE,
    UNKNOWN_SYSTEM,
    CohortEvents,
    cohort_events,
)
from clinfuse.kinds.ehr.features import EhrAlignment, canonical_events
from clinfuse.kinds.ehr.sources import source_for
from clinfuse.platform.errors import ClinFuseError
from pydantic import ValidationError

INDEX = {"1": pd.Timestamp("2020-06-01 12:00:00"), "2": pd.Timestamp("2020-06-01 12:00:00")}


def _csv(folder: Path, name: str, rows: list[dict]) -> None:
    pd.DataFrame(rows).to_csv(folder / f"{name}.csv", index=False)


@pytest.fixture(scope="module")
def omop(tmp_path_factory: pytest.TempPathFactory) -> tuple[CohortEvents, pd.DataFrame]:
    """One OMOP export read once (PyHealth starts a Dask cluster per read)."""
    root = tmp_path_factory.mktemp("omop")
    person = {"gender_concept_id": 8507, "year_of_birth": 1950, "month_of_birth": "", "day_of_birth": "",
              "race_concept_id": 0, "ethnicity_concept_id": 0}  # fmt: skip
    _csv(root, "person", [{"person_id": p, **person} for p in (1, 2, 3)])
    _csv(root, "visit_occurrence", [{"visit_occurrence_id": 10, "person_id": 1, "visit_concept_id": 9201,
                                     "visit_start_date": "2020-01-01", "visit_start_datetime": "2020-01-01 08:00:00",
                                     "visit_end_date": "2020-01-03", "visit_end_datetime": "2020-01-03 08:00:00",
                                     "visit_type_concept_id": 32817}])  # fmt: skip
    pd.DataFrame(columns=["person_id", "death_date", "death_datetime", "death_type_concept_id"]).to_csv(
        root / "death.csv", index=False
    )

    def condition(person, date, when, source_concept, concept, value):
        return {"condition_occurrence_id": len(conditions) + 1, "person_id": person, "condition_concept_id": concept,
                "condition_start_date": date, "condition_start_datetime": when, "condition_type_concept_id": 32817,
                "visit_occurrence_id": 10, "condition_source_value": value,
                "condition_source_concept_id": source_concept}  # fmt: skip

    conditions: list[dict] = []
    for row in [
        (1, "2020-01-03", "2020-01-03 08:00:00", 2000000001, 0, "I50.22"),  # source concept: ICD10CM
        (1, "2020-02-01", "", 0, 2000000002, "x"),  # date only; standard concept SNOMED
        (1, "2020-02-01", "2020-02-01 00:00:00", 0, 4321, "y"),  # concept not in concept.csv: bare OMOP id
        (1, "2020-02-01", "2020-02-01 00:00:00", 0, 0, "unmapped local code"),  # no concept: unknown system
        (1, "", "", 2000000001, 0, "I50.22"),  # no time at all
        (1, "2020-07-01", "2020-07-01 00:00:00", 2000000001, 0, "I50.22"),  # after the index time
        (3, "2020-01-01", "2020-01-01 00:00:00", 2000000001, 0, "I50.22"),  # patient outside the cohort
    ]:
        conditions.append(condition(*row))
    _csv(root, "condition_occurrence", conditions)
    measurements = [
        {"measurement_id": i, "person_id": person, "measurement_concept_id": 2000000003,
         "measurement_date": "2020-03-01", "measurement_datetime": f"2020-03-0{i} 09:00:00",
         "measurement_type_concept_id": 32817, "value_as_number": value, "unit_concept_id": unit_concept,
         "unit_source_value": unit, "measurement_source_value": "50912", "visit_occurrence_id": 10}
        for i, (person, value, unit, unit_concept) in enumerate(
            [(1, 1.1, "mg/dL", 0), (1, 97.0, "umol/L", 0), (2, 1.3, "MG/DL", 0), (2, 88.0, "µmol/l", 0),
             (2, "", "mg/dL", 0), (1, 1.2, "", 2000000004)], start=1)
    ]  # fmt: skip
    _csv(root, "measurement", measurements)
    _csv(root, "concept", [
        {"concept_id": 2000000001, "concept_name": "Chronic systolic heart failure", "vocabulary_id": "ICD10CM",
         "concept_code": "I50.22"},
        {"concept_id": 2000000002, "concept_name": "Heart failure", "vocabulary_id": "SNOMED",
         "concept_code": "84114007"},
        {"concept_id": 2000000003, "concept_name": "Creatinine", "vocabulary_id": "LOINC", "concept_code": "2160-0"},
        {"concept_id": 2000000004, "concept_name": "milligram per deciliter", "vocabulary_id": "UCUM",
         "concept_code": "mg/dL"},
    ])  # fmt: skip
    modality = EhrModality(name="ehr", kind="ehr", path=root, source="omop", events=("diagnosis", "lab"))
    scratch = tmp_path_factory.mktemp("scratch")
    kept = cohort_events(modality, INDEX, scratch, progress=False)
    return kept, kept.of(["1", "2"])


def test_omop_concepts_resolve_source_first_then_standard_then_bare_id(omop) -> None:
    _, events = omop
    diagnoses = set(events.loc[events["kind"] == "diagnosis", "code"])
    assert diagnoses == {"ICD10CM:I5022", "SNOMED:84114007", "OMOP:4321"}
    titled = events.set_index("code")["text"].to_dict()
    assert titled["ICD10CM:I5022"] == "Chronic systolic heart failure"


def test_omop_event_with_a_date_only_is_timed_at_its_midnight(omop) -> None:
    _, events = omop
    snomed = events[events["code"] == "SNOMED:84114007"]
    expected = (INDEX["1"] - pd.Timestamp("2020-02-01")).total_seconds() / 86400
    assert snomed["days_before_index"].tolist() == [expected]


def test_left_out_events_are_counted_per_reason(omop) -> None:
    kept, _ = omop
    assert kept.report["events_left_out"] == {NO_TIME: 1, UNKNOWN_SYSTEM: 1, NO_VALUE: 1, AFTER_INDEX: 1}
    assert kept.report["events_of_patients_outside_cohort"] == 1
    assert kept.report["unknown_code_systems"] == {"OMOP condition_occurrence without a concept": 1}


def test_one_lab_in_two_units_is_two_features_never_averaged(omop) -> None:
    _, events = omop
    labs = events[events["kind"] == "lab"]
    assert set(labs["code"]) == {"LOINC:2160-0 [mg/dL]", "LOINC:2160-0 [umol/L]"}, "spellings merged, units apart"
    assert set(labs.loc[labs["code"].str.endswith("[mg/dL]"), "value"]) == {1.1, 1.3, 1.2}, "UCUM concept as unit"
    ordered, _ = canonical_events(events)
    alignment = EhrAlignment.fit([ordered], min_code_count=1, max_codes=16)
    assert alignment.lab_items == ["LOINC:2160-0 [mg/dL]", "LOINC:2160-0 [umol/L]"]
    arrays, _ = alignment.transform(ordered, ["1", "2"])
    assert arrays["lab_observed"].tolist() == [[1.0, 1.0], [1.0, 1.0]]


def _meds(root: Path, zone: str | None = None) -> Path:
    (root / "data" / "train").mkdir(parents=True)
    (root / "metadata").mkdir()
    rows = [
        (1, None, "Gender/F", None, None),
        (1, "2020-01-01 00:00:00", "MEDS_BIRTH", None, None),
        (1, "2020-02-01 10:00:00", "ICD10CM/I50.22", None, None),
        (1, "2020-02-01 10:00:00", "ICD9CM/428.0", None, None),
        (1, "2020-02-02 10:00:00", "LOINC/2160-0", 1.23, "mg/dL"),
        (1, "2020-02-02 10:00:00", "LOINC/8867-4", 72.0, "/min"),
        (1, "2020-02-03 10:00:00", "LOCAL/abc", None, None),
        (2, "2020-02-03 10:00:00", "SITE-LAB/K", 4.1, "mmol/L"),
    ]
    times = [None if t is None else pd.Timestamp(t) for _, t, *_ in rows]
    table = pa.table({
        "subject_id": pa.array([r[0] for r in rows], pa.int64()),
        "time": pa.array(times, pa.timestamp("us")).cast(pa.timestamp("us", tz=zone)),
        "code": pa.array([r[2] for r in rows], pa.string()),
        "numeric_value": pa.array([r[3] for r in rows], pa.float32()),
        "unit": pa.array([r[4] for r in rows], pa.string()),
    })  # fmt: skip
    pq.write_table(table, root / "data" / "train" / "0.parquet")
    pq.write_table(pa.table({"subject_id": pa.array([1, 2], pa.int64()), "split": ["train", "train"]}),
                   root / "metadata" / "subject_splits.parquet")  # fmt: skip
    return root


def test_meds_codes_units_float32_values_and_site_systems(tmp_path: Path) -> None:
    root = _meds(tmp_path / "meds")
    modality = EhrModality(name="ehr", kind="ehr", path=root, source="meds",
                           events=("diagnosis", "lab", "vital"), code_systems={"SITE-LAB": "SITE-LAB"})  # fmt: skip
    kept = cohort_events(modality, INDEX, tmp_path / "scratch", progress=False)
    events = kept.of(["1", "2"]).set_index("code")
    assert set(events.index) == {"ICD10CM:I5022", "ICD9CM:4280", "LOINC:2160-0 [mg/dL]", "LOINC:8867-4 [/min]",
                                 "SITE-LAB:K [mmol/L]"}  # fmt: skip
    assert events.loc["LOINC:2160-0 [mg/dL]", "value"] == 1.23, "float32 restored to the decimal it stands for"
    assert events.loc["LOINC:8867-4 [/min]", "kind"] == "vital"
    assert kept.report["unknown_code_systems"] == {"LOCAL": 1}
    assert kept.report["events_left_out"] == {UNKNOWN_SYSTEM: 1}
    assert kept.report["read_problems"] == {"MEDS special codes (birth, death) not read as events": 1,
                                            "static codes (no time, e.g. sex) not read as events": 1}  # fmt: skip


def test_meds_with_zoned_times_is_refused_with_the_fix(tmp_path: Path) -> None:
    root = _meds(tmp_path / "meds", zone="UTC")
    modality = EhrModality(name="ehr", kind="ehr", path=root, source="meds")
    with pytest.raises(ClinFuseError, match="time-zone-naive"):
        cohort_events(modality, INDEX, tmp_path / "scratch", progress=False)


def test_icd9_titles_and_gem_mapping_come_from_the_cms_files() -> None:
    titles = icd_titles(["ICD9CM:4019", "ICD9PCS:3893", "ICD10CM:I10", "ICD10PCS:5A1955Z", "LOINC:2160-0"])
    assert titles["ICD9CM:4019"] == "Unspecified essential hypertension"
    assert "venous catheter" in titles["ICD9PCS:3893"].lower()
    assert set(titles) == {"ICD9CM:4019", "ICD9PCS:3893", "ICD10CM:I10", "ICD10PCS:5A1955Z"}
    assert icd9_to_icd10_gem()["4019"] == "I10"


def test_layout_errors_name_the_missing_file_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "person.csv").write_text("person_id\n1\n")
    modality = EhrModality(name="ehr", kind="ehr", path=tmp_path, source="omop")
    with pytest.raises(ClinFuseError) as error:
        source_for("omop").check_layout(modality)
    assert "death.csv" in error.value.problem and "header only" in error.value.fix
    vitals = EhrModality(name="ehr", kind="ehr", path=tmp_path, source="mimic4", events=("lab", "vital"))
    with pytest.raises(ClinFuseError, match="no vital events"):
        source_for("mimic4").check_layout(vitals)


def test_config_names_the_replacement_of_tables_and_checks_the_zone(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"events: \[diagnosis, lab\]"):
        EhrModality(name="ehr", kind="ehr", path=tmp_path, tables=["diagnoses_icd", "labevents"])
    with pytest.raises(ValidationError, match="IANA zone"):
        EhrModality(name="ehr", kind="ehr", path=tmp_path, timezone="Mars/Olympus")


def test_icd9_to_icd10_option_recodes_mapped_diagnoses_only(tmp_path: Path) -> None:
    from clinfuse.kinds.ehr.events import _icd9_as_icd10

    kept = pl.LazyFrame({"system": ["ICD9CM", "ICD9CM", "ICD10CM"], "code": ["4019", "V9999", "I10"]})
    recoded, counts = _icd9_as_icd10(kept)
    assert recoded.collect().rows() == [("ICD10CM", "I10"), ("ICD9CM", "V9999"), ("ICD10CM", "I10")]
    assert counts == {"icd9cm_mapped_to_icd10cm": 1, "icd9cm_without_gem_mapping_kept": 1}
