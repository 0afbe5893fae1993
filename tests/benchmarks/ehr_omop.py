"""Write a `SyntheticEhr` as an OMOP CDM 5.4 CSV export, with the columns and conventions of the demo's OMOP
rendering (platform/demo/ehr_formats/omop.py): diagnoses, procedures and drugs unmapped (standard concept id 0)
and coded by their ICD-10-CM, ICD-10-PCS or NDC source concept, labs by their LOINC concept with a UCUM unit
concept, a `concept.csv` resolving every id, and a header-only death table."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from ehr_synthetic import CONCEPTS, SyntheticEhr

DATE = "%Y-%m-%d"
DATETIME = "%Y-%m-%d %H:%M:%S"
EHR_RECORD = 32817  # type concept "EHR"
INPATIENT_VISIT = 9201
MALE, FEMALE = 8507, 8532
DEATH_COLUMNS = ("person_id", "death_date", "death_datetime", "death_type_concept_id", "cause_concept_id",
                 "cause_source_value", "cause_source_concept_id")  # fmt: skip


def write_omop(ehr: SyntheticEhr, root: Path) -> None:
    """The OMOP tables under `root` (created): person, visit_occurrence, condition_occurrence,
    procedure_occurrence, drug_exposure, measurement, concept and a header-only death."""
    root.mkdir(parents=True, exist_ok=True)
    zero, ehr_type, empty = pl.lit(0, pl.Int64), pl.lit(EHR_RECORD, pl.Int64), pl.lit(None, pl.String)
    codes = CONCEPTS.select("concept_id", "concept_code", "concept_name")
    _csv(ehr.persons.select(
        "person_id",
        pl.when(pl.col("female")).then(FEMALE).otherwise(MALE).alias("gender_concept_id"),
        pl.col("birth_time").dt.year().alias("year_of_birth"),
        pl.col("birth_time").dt.month().alias("month_of_birth"),
        empty.alias("day_of_birth"),
        zero.alias("race_concept_id"),
        zero.alias("ethnicity_concept_id"),
    ), root / "person.csv")  # fmt: skip
    _csv(ehr.visits.select(
        pl.col("visit_id").alias("visit_occurrence_id"),
        "person_id",
        pl.lit(INPATIENT_VISIT, pl.Int64).alias("visit_concept_id"),
        pl.col("start").dt.date().alias("visit_start_date"),
        pl.col("start").alias("visit_start_datetime"),
        pl.col("end").dt.date().alias("visit_end_date"),
        pl.col("end").alias("visit_end_datetime"),
        ehr_type.alias("visit_type_concept_id"),
    ), root / "visit_occurrence.csv")  # fmt: skip
    visit_end = ehr.visits.select("visit_id", pl.col("end").dt.date().alias("condition_end_date"))
    _csv(ehr.events["condition"].join(codes, on="concept_id").join(visit_end, on="visit_id").sort("event_id").select(
        pl.col("event_id").alias("condition_occurrence_id"),
        "person_id",
        zero.alias("condition_concept_id"),
        pl.col("start").dt.date().alias("condition_start_date"),
        pl.col("start").alias("condition_start_datetime"),
        "condition_end_date",
        empty.alias("condition_end_datetime"),
        ehr_type.alias("condition_type_concept_id"),
        pl.col("visit_id").alias("visit_occurrence_id"),
        pl.col("concept_code").alias("condition_source_value"),
        pl.col("concept_id").alias("condition_source_concept_id"),
    ), root / "condition_occurrence.csv")  # fmt: skip
    _csv(ehr.events["procedure"].join(codes, on="concept_id").sort("event_id").select(
        pl.col("event_id").alias("procedure_occurrence_id"),
        "person_id",
        zero.alias("procedure_concept_id"),
        pl.col("start").dt.date().alias("procedure_date"),
        pl.col("start").alias("procedure_datetime"),
        ehr_type.alias("procedure_type_concept_id"),
        pl.col("visit_id").alias("visit_occurrence_id"),
        pl.col("concept_code").alias("procedure_source_value"),
        pl.col("concept_id").alias("procedure_source_concept_id"),
    ), root / "procedure_occurrence.csv")  # fmt: skip
    _csv(ehr.events["drug"].join(codes, on="concept_id").sort("event_id").select(
        pl.col("event_id").alias("drug_exposure_id"),
        "person_id",
        zero.alias("drug_concept_id"),
        pl.col("start").dt.date().alias("drug_exposure_start_date"),
        pl.col("start").alias("drug_exposure_start_datetime"),
        pl.col("end").dt.date().alias("drug_exposure_end_date"),
        pl.col("end").alias("drug_exposure_end_datetime"),
        ehr_type.alias("drug_type_concept_id"),
        pl.col("visit_id").alias("visit_occurrence_id"),
        pl.col("concept_name").alias("drug_source_value"),  # the drug's name, as the demo writes it
        pl.col("concept_id").alias("drug_source_concept_id"),
    ), root / "drug_exposure.csv")  # fmt: skip
    _csv(_measurements(ehr), root / "measurement.csv")
    _csv(CONCEPTS.select(
        "concept_id", "concept_name", "domain_id", "vocabulary_id", "concept_class_id", "standard_concept",
        "concept_code", pl.lit("1970-01-01").alias("valid_start_date"), pl.lit("2099-12-31").alias("valid_end_date"),
        empty.alias("invalid_reason"),
    ), root / "concept.csv")  # fmt: skip
    _csv(pl.DataFrame(schema=dict.fromkeys(DEATH_COLUMNS, pl.String)), root / "death.csv")


def _measurements(ehr: SyntheticEhr) -> pl.DataFrame:
    labs = CONCEPTS.filter(pl.col("kind") == "measurement").select("concept_id", "concept_code", "unit")
    units = CONCEPTS.filter(pl.col("kind") == "unit").select(
        pl.col("concept_id").alias("unit_concept_id"), pl.col("concept_code").alias("unit")
    )
    return ehr.events["measurement"].join(labs, on="concept_id").join(units, on="unit").sort("event_id").select(
        pl.col("event_id").alias("measurement_id"),
        "person_id",
        pl.col("concept_id").alias("measurement_concept_id"),
        pl.col("start").dt.date().alias("measurement_date"),
        pl.col("start").alias("measurement_datetime"),
        pl.lit(EHR_RECORD, pl.Int64).alias("measurement_type_concept_id"),
        pl.col("value").alias("value_as_number"),
        pl.lit(None, pl.String).alias("value_as_concept_id"),
        "unit_concept_id",
        pl.col("unit").alias("unit_source_value"),
        pl.col("concept_code").alias("measurement_source_value"),
        pl.col("visit_id").alias("visit_occurrence_id"),
    )  # fmt: skip


def _csv(frame: pl.DataFrame, path: Path) -> None:
    frame.write_csv(path, date_format=DATE, datetime_format=DATETIME)
