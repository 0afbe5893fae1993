"""End to end: the demo cohort ingested into a feature cache; reuse, rebuild, failures, atomicity, privacy."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml
from clinfuse.kinds.table import TableKind
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.ingest import ingest
from clinfuse.platform.ingest.fingerprint import file_digest
from clinfuse.platform.security import Pseudonymiser, load_pseudonym_key


def _pseudonyms() -> Pseudonymiser:
    return Pseudonymiser(load_pseudonym_key())


def test_cache_matches_the_planted_cohort(demo_cache: Path, demo_truth: dict) -> None:
    cache = FeatureCache(demo_cache)
    cohort = cache.cohort.set_index("patient")
    pseudonym = _pseudonyms()
    assert len(cohort) == len(demo_truth["patients"])
    for pid, truth in demo_truth["patients"].items():
        row = cohort.loc[pseudonym(pid)]
        assert row["label"] == truth["label"]
        for modality in ("imaging", "genomics", "ehr"):
            assert bool(row[f"present_{modality}"]) == truth["present"][modality], (modality, pid)
    assert cache.array("imaging", "images").shape[0] == cohort["present_imaging"].sum()
    assert cache.table("genomics", "features").shape[0] == cohort["present_genomics"].sum()
    assert cache.array("ehr", "codes").shape[0] == cohort["present_ehr"].sum()
    rows = cache.rows("imaging")
    assert sorted(rows[rows >= 0]) == list(range(int((rows >= 0).sum())))


def test_each_patient_in_exactly_one_stratified_split(demo_cache: Path) -> None:
    cohort = FeatureCache(demo_cache).cohort
    assert cohort["patient"].is_unique
    assert set(cohort["split"]) == {"train", "val", "test"}
    shares = cohort["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.7) < 0.02 and abs(shares["test"] - 0.15) < 0.02
    prevalence = cohort.groupby("split")["label"].mean()
    assert prevalence.max() - prevalence.min() < 0.05


def test_only_data_before_the_index_time_is_used(demo_cache: Path, demo_cohort: Path, demo_truth: dict) -> None:
    cache = FeatureCache(demo_cache)
    vocabulary = cache.json("ehr", "alignment")["vocabulary"]
    leak = {f"ICD10CM:{c}" for c in demo_truth["planted"]["leak_diagnoses_after_index"]}
    assert not leak & set(vocabulary)
    events = cache.table("ehr", "events")
    assert (events["days_before_index"] > 0).all()
    assert cache.report["modalities"]["ehr"]["events_left_out"]["at or after the index time"] > 0
    assert not events["code"].isin(leak).any()

    # the image kept for each patient is the index image, never the follow-up taken after the index time
    by_uid = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in demo_cohort.rglob("*.dcm")}
    digests = [row["digest"] for row in cache.json("imaging", "images")["rows"]]
    cohort = cache.cohort.set_index("patient")
    pseudonym = _pseudonyms()
    for pid, truth in demo_truth["patients"].items():
        if truth["present"]["imaging"]:
            row = cohort.loc[pseudonym(pid), "row_imaging"]
            assert digests[row] == file_digest(by_uid[truth["image"]["sop_instance_uid"]])


def test_features_are_normalised_on_training_patients(demo_cache: Path) -> None:
    cache = FeatureCache(demo_cache)
    features = cache.table("genomics", "features").set_index("patient")
    train = cache.cohort.loc[cache.cohort["split"] == "train", "patient"]
    train_values = features.loc[features.index.intersection(train)].to_numpy()
    assert np.abs(train_values.mean(axis=0)).max() < 1e-3
    labs = np.asarray(cache.array("ehr", "labs"))
    assert np.isfinite(labs).all()


def test_unchanged_inputs_reuse_the_cache(demo_cache: Path, demo_cohort: Path) -> None:
    before = json.loads((demo_cache / "manifest.json").read_text())
    result = ingest(demo_cohort / "cohort.yaml", demo_cache, workers=1)
    assert result.up_to_date
    assert json.loads((demo_cache / "manifest.json").read_text()) == before


def _copy_cache(demo_cache: Path, tmp_path: Path) -> Path:
    target = tmp_path / "cache"
    shutil.copytree(demo_cache, target)
    return target


def test_planted_broken_files_are_reported_and_the_rest_reused(
    demo_cache: Path, demo_cohort_copy: Path, tmp_path: Path
) -> None:
    cache = _copy_cache(demo_cache, tmp_path)
    files = sorted((demo_cohort_copy / "imaging").rglob("*.dcm"))
    victim = files[3]
    victim.write_bytes(victim.read_bytes()[:5000])
    sr = pydicom.dcmread(pydicom.data.get_testdata_file("reportsi.dcm"))
    (demo_cohort_copy / "imaging" / "reports").mkdir()
    sr.save_as(demo_cohort_copy / "imaging" / "reports" / "report.dcm")

    result = ingest(demo_cohort_copy / "cohort.yaml", cache, workers=1)
    assert result.rebuilt == ["imaging"] and sorted(result.reused) == ["ehr", "genomics"]
    report = json.loads((cache / "ingest_report.json").read_text())["modalities"]["imaging"]
    assert [f["path"] for f in report["failed"]["files"]] == [str(victim.relative_to(demo_cohort_copy / "imaging"))]
    not_burned_in = [f["path"] for f in report["skipped"]["files"] if not f["reason"].startswith("BurnedIn")]
    assert not_burned_in == ["reports/report.dcm"]  # the demo's priors with burned-in text are skipped too
    assert report["images_decoded"] == 0, "every other image is reused from the previous cache"
    FeatureCache(cache)


def test_changed_preprocessing_rebuilds_only_that_modality(
    demo_cache: Path, demo_cohort_copy: Path, tmp_path: Path
) -> None:
    cache = _copy_cache(demo_cache, tmp_path)
    config_path = demo_cohort_copy / "cohort.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["modalities"][0]["image_size"] = 64
    config_path.write_text(yaml.safe_dump(config))
    result = ingest(config_path, cache, workers=1)
    assert result.rebuilt == ["imaging"]
    assert FeatureCache(cache).array("imaging", "images").shape[1:] == (64, 64)


def test_an_interrupted_ingest_leaves_the_previous_cache_intact(
    demo_cache: Path, demo_cohort_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _copy_cache(demo_cache, tmp_path)
    before = (cache / "manifest.json").read_bytes()
    table = pd.read_parquet(demo_cohort_copy / "genomics" / "expression.parquet")
    table.iloc[:, 1] += 1.0
    table.to_parquet(demo_cohort_copy / "genomics" / "expression.parquet", index=False)

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("simulated kill during the table modality")

    monkeypatch.setattr(TableKind, "ingest", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest(demo_cohort_copy / "cohort.yaml", cache, workers=1)
    assert (cache / "manifest.json").read_bytes() == before
    FeatureCache(cache)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_damaged_cache_is_refused(demo_cache: Path, tmp_path: Path) -> None:
    cache = _copy_cache(demo_cache, tmp_path)
    images = cache / "modalities" / "imaging" / "images.npy"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(ClinFuseError, match="damaged"):
        FeatureCache(cache)
    with pytest.raises(ClinFuseError, match="not a ClinFuse feature cache"):
        FeatureCache(tmp_path)


def _dicom_only_config(cohort: Path) -> Path:
    config = yaml.safe_load((cohort / "cohort.yaml").read_text())
    config["modalities"] = [m for m in config["modalities"] if m["kind"] == "dicom"]
    path = cohort / "imaging_only.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


PLANTED_PHI = {
    "PatientName": "PLANTEDSURNAME^PLANTEDGIVEN",
    "PatientAddress": "42 PLANTED LANE, PHIVILLE",
    "OtherPatientIDs": "MRN-PLANTED-0042",
    "PatientBirthDate": "19010203",
    "InstitutionName": "PLANTED MEMORIAL HOSPITAL",
    "AccessionNumber": "ACCPLANTED77",
    "PatientComments": "planted comment about the patient",
}


def _written_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_no_dicom_phi_or_source_id_reaches_any_written_file(
    demo_cohort_copy: Path, tmp_path: Path, clinfuse_exe: Path
) -> None:
    for path in (demo_cohort_copy / "imaging").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        for keyword, value in PLANTED_PHI.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    cache = tmp_path / "cache"
    result = subprocess.run(
        [str(clinfuse_exe), "ingest", "--config", str(_dicom_only_config(demo_cohort_copy)), "--out", str(cache)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    source_ids = pd.read_csv(demo_cohort_copy / "cohort.csv", dtype={"patient_id": str})["patient_id"]
    needles = [v.encode() for v in PLANTED_PHI.values()] + [b"PLANTEDSURNAME"] + [i.encode() for i in source_ids]
    haystacks = [(p.name, p.read_bytes()) for p in _written_files(cache)]
    haystacks += [("stdout", result.stdout.encode()), ("stderr", result.stderr.encode())]
    for name, content in haystacks:
        found = [n.decode() for n in needles if n in content]
        assert not found, f"{name} holds identifying values {found[:3]}"


def test_demo_cache_holds_no_source_ids_or_demo_phi(demo_cache: Path, demo_cohort: Path) -> None:
    source_ids = pd.read_csv(demo_cohort / "cohort.csv", dtype={"patient_id": str})["patient_id"]
    phi = set()
    for path in list((demo_cohort / "imaging").rglob("*.dcm"))[:50]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        phi |= {str(ds.PatientName), str(ds.PatientAddress), str(ds.AccessionNumber), str(ds.StudyInstanceUID)}
    needles = [v.encode() for v in phi] + [i.encode() for i in source_ids]
    for path in _written_files(demo_cache):
        content = path.read_bytes()
        found = [n.decode() for n in needles if n in content]
        assert not found, f"{path.name} holds identifying values {found[:3]}"


def test_bad_config_is_one_line(clinfuse_exe: Path, tmp_path: Path) -> None:
    (tmp_path / "cohort.yaml").write_text("name: x\ncohort: {path: missing.csv}\nmodalities: []\n")
    result = subprocess.run(
        [str(clinfuse_exe), "ingest", "--config", str(tmp_path / "cohort.yaml"), "--out", str(tmp_path / "c")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: invalid cohort config")
    assert not (tmp_path / "c").exists()
