"""The kinds' online-request writers: a request cell written back as a source reads as the batch source would, a
malformed cell is one error without a patient id, and DICOM paths stay inside CLINFUSE_SERVING_ROOT."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from clinfuse.kinds.dicom.config import DicomModality
from clinfuse.kinds.dicom.request import SERVING_ROOT_ENV
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.ehr.sources import source_for
from clinfuse.kinds.table.config import TableModality
from clinfuse.kinds.table.source import read_table
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds import get_kind
from pydicom.data import get_testdata_file

TABLE_CELLS = {"p1": {"GENE_A": 1.5, "GENE_B": None}, "p2": {"GENE_A": -2.0, "GENE_B": 3.25}}


@pytest.mark.parametrize("layout", ["wide", "long"])
def test_table_cells_read_back_as_the_batch_table_reader_reads_them(tmp_path: Path, layout: str) -> None:
    settings = {"layout": layout, "patient_id": "sample", "feature_column": "gene", "value_column": "expr"}
    site = get_kind("table").write_request_source(settings, TABLE_CELLS, tmp_path)
    config = TableModality(name="genomics", kind="table", **settings, **site)
    frame, counts = read_table(config)
    assert sorted(frame.index) == ["p1", "p2"]
    assert frame.loc["p1", "GENE_A"] == 1.5 and np.isnan(frame.loc["p1", "GENE_B"])
    assert frame.loc["p2", "GENE_B"] == 3.25
    assert counts["rows_without_patient_id"] == 0


def test_a_request_without_the_table_modality_still_writes_a_readable_table_of_no_patient(tmp_path: Path) -> None:
    site = get_kind("table").write_request_source({}, {}, tmp_path)
    try:
        frame, _ = read_table(TableModality(name="genomics", kind="table", **site))
    except ClinFuseError as exc:  # an empty table may be refused, but only as a table with no usable rows
        assert "no data rows" not in str(exc)
        return
    assert frame.empty


@pytest.mark.parametrize("cell", [[1, 2], {"GENE_A": "high"}, {"GENE_A": True}])
def test_a_malformed_table_cell_is_one_error_without_the_patient_id(tmp_path: Path, cell: object) -> None:
    with pytest.raises(ClinFuseError) as caught:
        get_kind("table").write_request_source({}, {"MRN-0042": cell}, tmp_path)
    assert (
        "MRN-0042" not in str(caught.value) and "docs/serving.md" in str(caught.value) or "number" in str(caught.value)
    )


def test_ehr_records_become_the_event_stream_with_systems_named_and_offsets_converted(tmp_path: Path) -> None:
    cells = {"p1": [
        {"time": "2150-01-02T10:00:00", "kind": "diagnosis", "system": "ICD10CM", "code": "I50.22"},
        {"time": "2150-01-02T10:00:00+02:00", "kind": "lab", "system": "http://loinc.org", "code": "2160-0",
         "value": 1.4, "unit": "mg/dL", "text": "Creatinine"},
        {"time": "2150-01-03", "kind": "drug", "system": None, "code": "X"},
    ]}  # fmt: skip
    site = get_kind("ehr").write_request_source({}, cells, tmp_path)
    assert site["source"] == "events"
    config = EhrModality(name="ehr", kind="ehr", **site, events=("diagnosis", "drug", "lab"))
    events = source_for("events").read(config, tmp_path / "scratch", progress=False).events.collect()
    by_kind = {row["kind"]: row for row in events.iter_rows(named=True)}
    assert by_kind["diagnosis"]["system"] == "ICD10CM" and by_kind["diagnosis"]["code"] == "I5022"
    assert by_kind["lab"]["system"] == "LOINC" and by_kind["lab"]["value"] == 1.4 and by_kind["lab"]["unit"] == "mg/dL"
    assert by_kind["lab"]["time"] == pd.Timestamp("2150-01-02 08:00:00")  # +02:00 converted to the zone (UTC)
    assert by_kind["drug"]["system"] is None and by_kind["drug"]["raw_system"] == "(no system)"
    assert events["patient_id"].unique().to_list() == ["p1"]


@pytest.mark.parametrize(
    "cell",
    [{"time": "x"}, [{"time": "yesterday", "kind": "lab", "system": "LOINC", "code": "1"}],
     [{"time": "2150-01-01", "kind": "lab", "system": "LOINC", "code": "1", "value": "high"}],
     [{"time": "2150-01-01", "kind": "lab", "system": "LOINC", "cod": "1"}]],
)  # fmt: skip
def test_a_malformed_ehr_cell_is_one_error_without_the_patient_id(tmp_path: Path, cell: object) -> None:
    with pytest.raises(ClinFuseError) as caught:
        get_kind("ehr").write_request_source({}, {"MRN-0042": cell}, tmp_path)
    assert "MRN-0042" not in str(caught.value)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    for study, name in (("s1", "CT_small.dcm"), ("s2", "MR_small.dcm"), ("s3", "JPEG2000.dcm")):
        (root / study).mkdir(parents=True)
        shutil.copy(get_testdata_file(name), root / study / name)
    return root


def test_dicom_paths_become_a_manifest_and_only_the_listed_files_are_fingerprinted(
    images: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "request"
    folder.mkdir()
    cells = {"p1": [str(images / "s1" / "CT_small.dcm"), str(images / "s3")], "p2": str(images / "s2")}
    site = get_kind("dicom").write_request_source({}, cells, folder)
    config = DicomModality(name="imaging", kind="dicom", **site)
    assert config.link == "manifest" and config.path == images
    listed = config.listed_inputs()
    assert [p.relative_to(images).as_posix() for p in listed] == ["s1/CT_small.dcm", "s2/MR_small.dcm",
                                                                  "s3/JPEG2000.dcm"]  # fmt: skip
    manifest = pd.read_csv(config.manifest, dtype=str)
    assert dict(zip(manifest["path"], manifest["patient_id"], strict=True))[str(images / "s2" / "MR_small.dcm")] == "p2"


def test_dicom_paths_outside_the_serving_root_or_missing_are_refused(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = get_kind("dicom")
    with pytest.raises(ClinFuseError, match="relative"):
        kind.write_request_source({}, {"p1": "s1/CT_small.dcm"}, tmp_path)
    with pytest.raises(ClinFuseError, match="does not exist"):
        kind.write_request_source({}, {"p1": str(images / "s9")}, tmp_path)
    monkeypatch.setenv(SERVING_ROOT_ENV, str(images / "s1"))
    with pytest.raises(ClinFuseError, match="outside"):
        kind.write_request_source({}, {"p1": str(images / "s2" / "MR_small.dcm")}, tmp_path)
    with pytest.raises(ClinFuseError, match="outside"):
        kind.write_request_source({}, {"p1": "../s2/MR_small.dcm"}, tmp_path)
    site = kind.write_request_source({}, {"p1": "CT_small.dcm"}, tmp_path)  # relative to the serving root
    assert DicomModality(name="imaging", kind="dicom", **site).listed_inputs() == [images / "s1" / "CT_small.dcm"]


def test_kinds_without_a_request_writer_are_refused_with_the_batch_fix(tmp_path: Path) -> None:
    for name in ("notes", "waveform"):
        with pytest.raises(ClinFuseError, match="clinfuse score"):
            get_kind(name).write_request_source({}, {"p1": "x"}, tmp_path)


def test_events_of_the_event_table_keep_polars_types(tmp_path: Path) -> None:
    get_kind("ehr").write_request_source({}, {}, tmp_path)
    frame = pl.read_parquet(tmp_path / "events.parquet")
    assert frame.is_empty() and frame.schema["time"] == pl.Datetime("us")


def test_a_manifest_linked_modality_is_fingerprinted_by_its_listed_files_only(images: Path, tmp_path: Path) -> None:
    from clinfuse.platform.config import load_cohort_config
    from clinfuse.platform.ingest.runner import _fingerprints
    from clinfuse.platform.security import Pseudonymiser

    pd.DataFrame({"patient_id": ["p1"], "label": [1], "index_time": ["2150-01-01"]}).to_csv(tmp_path / "c.csv")
    pd.DataFrame({"patient_id": ["p1"], "path": [str(images / "s1" / "CT_small.dcm")]}).to_csv(tmp_path / "m.csv")
    (tmp_path / "cohort.yaml").write_text(
        f"name: t\ncohort: {{path: c.csv}}\nmodalities:\n- {{name: imaging, kind: dicom, path: {images}, "
        "link: manifest, manifest: m.csv}\n"
    )

    def fingerprint() -> str:
        config = load_cohort_config(tmp_path / "cohort.yaml")
        return _fingerprints(config, Pseudonymiser(None, enabled=False), None)[0]["modalities"]["imaging"]

    before = fingerprint()
    shutil.copy(get_testdata_file("MR_small.dcm"), images / "s2" / "another.dcm")  # not listed
    assert fingerprint() == before
    shutil.copy(get_testdata_file("MR_small.dcm"), images / "s1" / "CT_small.dcm")  # the listed file changed
    assert fingerprint() != before
