"""The MIMIC-III reader on a tiny MIMIC-III folder (the real upper-case headers, gzipped): tokens, times, and the
ingest report's counts, with and without the ICD-9 -> ICD-10 GEM."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import pandas as pd
import pytest
from clinfuse.kinds.ehr.codes import icd_titles
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.events import AFTER_INDEX, NO_VALUE, CohortEvents, cohort_events
from clinfuse.kinds.ehr.sources.mimic import Mimic3Source
from clinfuse.platform.errors import ClinFuseError

ADMISSIONS_HEADER = (
    "ROW_ID", "SUBJECT_ID", "HADM_ID", "ADMITTIME", "DISCHTIME", "DEATHTIME", "ADMISSION_TYPE", "ADMISSION_LOCATION",
    "DISCHARGE_LOCATION", "INSURANCE", "LANGUAGE", "RELIGION", "MARITAL_STATUS", "ETHNICITY", "EDREGTIME",
    "EDOUTTIME", "DIAGNOSIS", "HOSPITAL_EXPIRE_FLAG", "HAS_CHARTEVENTS_DATA",
)  # fmt: skip
PRESCRIPTIONS_HEADER = (
    "ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "STARTDATE", "ENDDATE", "DRUG_TYPE", "DRUG", "DRUG_NAME_POE",
    "DRUG_NAME_GENERIC", "FORMULARY_DRUG_CD", "GSN", "NDC", "PROD_STRENGTH", "DOSE_VAL_RX", "DOSE_UNIT_RX",
    "FORM_VAL_DISP", "FORM_UNIT_DISP", "ROUTE",
)  # fmt: skip
# subject -> index time; subject 40 is not in the cohort
INDEX_TIMES = {
    "10": pd.Timestamp("2150-06-01 12:00:00"),
    "20": pd.Timestamp("2160-01-01 00:00:00"),
    "30": pd.Timestamp("2170-03-01 00:00:00"),
}
# hadm -> (subject, admittime, dischtime); 101 and 201 start at or after their patient's index time
ADMISSIONS = {
    100: (10, "2150-01-02 08:00:00", "2150-01-05 14:30:00"),
    101: (10, "2150-06-01 12:00:00", "2150-06-10 10:00:00"),
    200: (20, "2159-05-01 09:00:00", "2159-05-04 10:00:00"),
    201: (20, "2160-02-01 09:00:00", "2160-02-05 10:00:00"),
    300: (30, "2170-01-10 09:00:00", "2170-01-12 09:00:00"),
    400: (40, "2140-01-01 09:00:00", "2140-01-03 09:00:00"),
}
DIAGNOSES = [(100, "4019"), (100, "4280"), (101, "25000"), (200, "25000"), (200, "41401"), (201, "4280"),
             (300, "4019"), (300, "36570"), (400, "4019")]  # fmt: skip  # 36570: the GEM's "no map"
PROCEDURES = [(100, "3893"), (201, "3995"), (300, "9904")]
# (hadm, STARTDATE, DRUG, NDC): NDC 0 means none; the 2150-06-01 row starts on the index day of subject 10
DRUGS = [(100, "2150-01-03 00:00:00", "Furosemide", "00054829725"), (100, "2150-01-03 00:00:00", "Heparin Flush", "0"),
         (101, "2150-06-01 00:00:00", "Furosemide", "00054829725"),
         (200, "2159-05-02 00:00:00", "Metformin", "00093104801")]  # fmt: skip
# (subject, HADM_ID, ITEMID, CHARTTIME, VALUE, VALUENUM, VALUEUOM); outpatient labs have no HADM_ID
LABS = [
    (10, "100", "50912", "2150-01-03 06:00:00", "1.2", "1.2", "mg/dL"),
    (10, "100", "51222", "2150-01-03 06:00:00", "11.5", "11.5", "g/dL"),
    (10, "101", "50912", "2150-06-02 06:00:00", "1.5", "1.5", "mg/dL"),
    (20, "", "50912", "2159-04-20 08:00:00", "ERROR", "", "mg/dL"),
    (20, "200", "51222", "2159-05-02 06:00:00", "12.0", "12.0", "g/dl"),
    (40, "400", "50912", "2140-01-02 06:00:00", "0.9", "0.9", "mg/dL"),
]


def write(folder: Path, name: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    (folder / name).write_bytes(gzip.compress(text.getvalue().encode()))


def write_mimic3(root: Path) -> Path:
    """A MIMIC-III v1.4 folder with the tables PyHealth's MIMIC3Dataset reads."""
    root.mkdir(parents=True)
    subjects = sorted({s for s, _, _ in ADMISSIONS.values()})
    write(root, "PATIENTS.csv.gz", ("ROW_ID", "SUBJECT_ID", "GENDER", "DOB", "DOD", "DOD_HOSP", "DOD_SSN",
                                    "EXPIRE_FLAG"),
          [(i, s, "F", "2090-01-01 00:00:00", "", "", "", 0) for i, s in enumerate(subjects)])  # fmt: skip
    write(root, "ADMISSIONS.csv.gz", ADMISSIONS_HEADER,
          [(i, s, h, admit, disch, "", "EMERGENCY", "EMERGENCY ROOM ADMIT", "HOME", "Medicare", "ENGL", "CATHOLIC",
            "MARRIED", "WHITE", "", "", "CHEST PAIN", 0, 1)
           for i, (h, (s, admit, disch)) in enumerate(ADMISSIONS.items())])  # fmt: skip
    write(root, "ICUSTAYS.csv.gz", ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "DBSOURCE", "FIRST_CAREUNIT",
                                    "LAST_CAREUNIT", "FIRST_WARDID", "LAST_WARDID", "INTIME", "OUTTIME", "LOS"),
          [(0, 10, 100, 1000, "carevue", "MICU", "MICU", 52, 52, "2150-01-02 10:00:00", "2150-01-03 10:00:00",
            1.0)])  # fmt: skip
    for name, codes in (("DIAGNOSES_ICD.csv.gz", DIAGNOSES), ("PROCEDURES_ICD.csv.gz", PROCEDURES)):
        write(root, name, ("ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"),
              [(i, ADMISSIONS[h][0], h, i + 1, code) for i, (h, code) in enumerate(codes)])  # fmt: skip
    write(root, "PRESCRIPTIONS.csv.gz", PRESCRIPTIONS_HEADER,
          [(i, ADMISSIONS[h][0], h, "", start, start, "MAIN", drug, drug, drug.lower(), "X1", "", ndc, "10mg", "10",
            "mg", "1", "TAB", "PO") for i, (h, start, drug, ndc) in enumerate(DRUGS)])  # fmt: skip
    write(root, "LABEVENTS.csv.gz", ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ITEMID", "CHARTTIME", "VALUE", "VALUENUM",
                                     "VALUEUOM", "FLAG"), [(i, *row, "") for i, row in enumerate(LABS)])  # fmt: skip
    write(root, "D_LABITEMS.csv.gz", ("ROW_ID", "ITEMID", "LABEL", "FLUID", "CATEGORY", "LOINC_CODE"),
          [(1, 50912, "Creatinine", "Blood", "Chemistry", "2160-0"),
           (2, 51222, "Hemoglobin", "Blood", "Hematology", "")])  # fmt: skip
    return root


def events_of(result: CohortEvents) -> pd.DataFrame:
    """The kept events, read now (the next ingest into the same scratch folder overwrites the file)."""
    return result.of(list(INDEX_TIMES))


@pytest.fixture(scope="module")
def ingests(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[pd.DataFrame, dict]]:
    """One ingest without and one with the GEM; the second reuses PyHealth's cache in the same scratch folder,
    so the module starts PyHealth's Dask cluster once."""
    root = write_mimic3(tmp_path_factory.mktemp("mimic3") / "mimic-iii-1.4")
    scratch = tmp_path_factory.mktemp("scratch")
    out = {}
    for gem in (False, True):
        modality = EhrModality(name="ehr", kind="ehr", path=root, source="mimic3", icd9_to_icd10=gem)
        result = cohort_events(modality, INDEX_TIMES, scratch, False)
        out[gem] = (events_of(result), result.report)
    return out


def tokens(events: pd.DataFrame, patient: str) -> set[str]:
    return set(events.loc[events["patient_id"] == patient, "code"])


def test_tokens_of_every_kind_before_the_index_time(ingests: dict) -> None:
    events, _ = ingests[False]
    assert tokens(events, "10") == {"ICD9CM:4019", "ICD9CM:4280", "ICD9PCS:3893", "NDC:00054829725",
                                    "DRUG-NAME:heparin flush", "LOINC:2160-0 [mg/dL]",
                                    "MIMIC-LAB:51222 [g/dL]"}  # fmt: skip
    assert tokens(events, "20") == {"ICD9CM:25000", "ICD9CM:41401", "NDC:00093104801", "MIMIC-LAB:51222 [g/dL]"}
    assert tokens(events, "30") == {"ICD9CM:4019", "ICD9CM:36570", "ICD9PCS:9904"}
    labs = events[events["kind"] == "lab"].set_index(["patient_id", "code"])["value"]
    assert labs[("10", "LOINC:2160-0 [mg/dL]")] == 1.2
    assert labs[("20", "MIMIC-LAB:51222 [g/dL]")] == 12.0
    drugs = events[events["kind"] == "drug"].set_index("code")["text"]
    assert drugs["DRUG-NAME:heparin flush"] == "Heparin Flush"


def days_before(index: pd.Timestamp, time: str) -> float:
    return (index - pd.Timestamp(time)).total_seconds() / 86400


def test_diagnoses_and_procedures_are_timed_at_discharge_drugs_at_the_end_of_their_start_day(ingests: dict) -> None:
    events, _ = ingests[False]
    of_10 = events[events["patient_id"] == "10"].set_index("code")["days_before_index"]
    index = INDEX_TIMES["10"]
    assert of_10["ICD9CM:4019"] == pytest.approx(days_before(index, "2150-01-05 14:30:00"))
    assert of_10["ICD9PCS:3893"] == pytest.approx(days_before(index, "2150-01-05 14:30:00"))
    # STARTDATE has no time of day: the drug counts as started at the end of 2150-01-03
    assert of_10["NDC:00054829725"] == pytest.approx(days_before(index, "2150-01-03 23:59:59"))
    assert of_10["LOINC:2160-0 [mg/dL]"] == pytest.approx(days_before(index, "2150-01-03 06:00:00"))


def test_report_counts_every_left_out_event(ingests: dict) -> None:
    _, report = ingests[False]
    assert report["source"] == "mimic3"
    # after the index: subject 10's index-admission diagnosis, lab and index-day drug; subject 20's later admission
    assert report["events_left_out"] == {AFTER_INDEX: 5, NO_VALUE: 1}
    assert report["events_before_index"] == 14
    assert report["events_of_cohort_patients"] == 20
    assert report["events_of_patients_outside_cohort"] == 2
    assert report["unknown_code_systems"] == {}
    assert "icd9_to_icd10" not in report


def test_icd9_diagnoses_recoded_through_the_gem(ingests: dict) -> None:
    events, report = ingests[True]
    assert tokens(events, "10") >= {"ICD10CM:I10", "ICD10CM:I509", "ICD9PCS:3893"}
    assert tokens(events, "20") >= {"ICD10CM:E119", "ICD10CM:I2510"}
    assert tokens(events, "30") == {"ICD10CM:I10", "ICD9CM:36570", "ICD9PCS:9904"}
    assert not any(t.startswith("ICD9CM:") for t in set(events["code"]) - {"ICD9CM:36570"})
    assert report["icd9_to_icd10"] == {"icd9cm_mapped_to_icd10cm": 5, "icd9cm_without_gem_mapping_kept": 1}
    assert report["events_before_index"] == 14


def test_icd9_tokens_have_titles() -> None:
    assert icd_titles(["ICD9CM:4019", "ICD9PCS:3893", "MIMIC-LAB:51222"]) == {
        "ICD9CM:4019": "Unspecified essential hypertension",
        "ICD9PCS:3893": "Venous catheterization, not elsewhere classified",
    }


def test_missing_icustays_is_named_before_pyhealth_runs(tmp_path: Path) -> None:
    root = write_mimic3(tmp_path / "mimic")
    (root / "ICUSTAYS.csv.gz").unlink()
    modality = EhrModality(name="ehr", kind="ehr", path=root, source="mimic3")
    with pytest.raises(ClinFuseError, match="ICUSTAYS"):
        Mimic3Source().check_layout(modality)


def test_uncompressed_lab_items_still_give_loinc_codes(tmp_path: Path) -> None:
    root = write_mimic3(tmp_path / "mimic")
    items = root / "D_LABITEMS.csv.gz"
    (root / "D_LABITEMS.csv").write_bytes(gzip.decompress(items.read_bytes()))
    items.unlink()
    assert Mimic3Source().lab_loinc(root).rows() == [("50912", "2160-0")]
