"""The demo cohort: determinism, missingness, prevalence, planted truth, tables and MIMIC-IV EHR."""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clinfuse.platform.config import load_cohort_config
from clinfuse.platform.demo import generate_demo_cohort
from clinfuse.platform.demo.latent import PRESENCE_RATES
from clinfuse.platform.demo.vocabulary import PLANTED_GENES
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    generate_demo_cohort(tmp_path / "a", patients=40, seed=5)
    generate_demo_cohort(tmp_path / "b", patients=40, seed=5)
    generate_demo_cohort(tmp_path / "c", patients=40, seed=6)
    first, second, other = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert first.keys() == second.keys()
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []
    assert first["cohort.csv"] != other["cohort.csv"]


def test_regenerating_into_the_same_folder_leaves_no_stale_files(tmp_path: Path) -> None:
    generate_demo_cohort(tmp_path, patients=40, seed=1)
    generate_demo_cohort(tmp_path, patients=20, seed=2)
    cohort = pd.read_csv(tmp_path / "cohort.csv", dtype={"patient_id": str})
    manifest = pd.read_csv(tmp_path / "imaging_manifest.csv")
    assert len(cohort) == 20
    assert len(list((tmp_path / "imaging").rglob("*.dcm"))) == len(manifest)


def test_missing_modality_rates_and_prevalence(demo_truth: dict) -> None:
    patients = list(demo_truth["patients"].values())
    for modality, rate in PRESENCE_RATES.items():
        observed = np.mean([p["present"][modality] for p in patients])
        assert abs(observed - rate) < 0.08, f"{modality}: {observed:.2f} present, expected ~{rate}"
    assert all(any(p["present"].values()) for p in patients)
    prevalence = np.mean([p["label"] for p in patients])
    assert 0.2 < prevalence < 0.5


def test_latent_contributions_separate_the_labels(demo_truth: dict) -> None:
    patients = list(demo_truth["patients"].values())
    terms = ["imaging", "genomics", "ehr", "interaction", "age"]
    features = np.array([[p["contributions"][t] for t in terms] for p in patients])
    labels = np.array([p["label"] for p in patients])
    model = LogisticRegression().fit(features, labels)
    auroc = roc_auc_score(labels, model.predict_proba(features)[:, 1])
    assert auroc > 0.8
    assert (model.coef_[0][:3] > 0).all(), "each modality's contribution must push the risk up"
    logits = np.array([p["logit"] for p in patients])
    assert np.allclose(logits, demo_truth["weights"]["intercept"] + features.sum(axis=1), atol=1e-4)


def test_cohort_table_and_config(demo_cohort: Path, demo_truth: dict) -> None:
    cohort = pd.read_csv(demo_cohort / "cohort.csv", dtype={"patient_id": str})
    assert list(cohort.columns) == ["patient_id", "label", "sex", "age", "index_time"]
    assert cohort["patient_id"].is_unique
    assert set(cohort["patient_id"]) == set(demo_truth["patients"])
    pd.to_datetime(cohort["index_time"], format="%Y-%m-%d %H:%M:%S")
    config = load_cohort_config(demo_cohort / "cohort.yaml")
    assert [m.kind for m in config.modalities] == ["dicom", "table", "ehr"]
    assert "/" not in (demo_cohort / "cohort.yaml").read_text().split("path:")[1].split("\n")[0].strip()[:1]


def test_expression_table(demo_cohort: Path, demo_truth: dict) -> None:
    table = pd.read_parquet(demo_cohort / "genomics" / "expression.parquet")
    twin = pd.read_csv(demo_cohort / "genomics" / "expression.csv", dtype={"patient_id": str})
    pd.testing.assert_frame_equal(table, twin, check_exact=False, atol=1e-9)
    genes = table.columns[1:]
    assert 950 <= len(genes) <= 1050 and genes.is_unique
    assert set(PLANTED_GENES) <= set(genes)
    with_genomics = {pid for pid, p in demo_truth["patients"].items() if p["present"]["genomics"]}
    assert set(table["patient_id"]) == with_genomics and table["patient_id"].is_unique
    nan_fraction = table[genes].isna().to_numpy().mean()
    assert 0 < nan_fraction < 0.01
    values = table[genes].to_numpy()
    assert np.nanmin(values) >= 0 and np.nanmax(values) < 20  # log-expression scale

    samples = pd.read_csv(demo_cohort / "genomics" / "samples.csv", dtype={"patient_id": str})
    per_batch = table.set_index("patient_id")[genes].groupby(samples.set_index("patient_id")["batch"]).mean()
    spread_between_batches = per_batch.std(axis=0).median()
    assert spread_between_batches > 0.1, "a batch effect is expected"

    score = pd.Series({pid: p["latent"]["gene_score"] for pid, p in demo_truth["patients"].items()})
    planted_mean = table.set_index("patient_id")[list(PLANTED_GENES)].mean(axis=1)
    assert np.corrcoef(planted_mean, score[planted_mean.index])[0, 1] > 0.5


def test_ehr_layout_and_leakage_trap(demo_cohort: Path, demo_truth: dict) -> None:
    hosp = demo_cohort / "ehr" / "hosp"
    expected = {"patients", "admissions", "diagnoses_icd", "procedures_icd", "prescriptions", "labevents",
                "d_labitems"}  # fmt: skip
    assert {p.name.removesuffix(".csv.gz") for p in hosp.glob("*.csv.gz")} == expected
    assert (demo_cohort / "ehr" / "icu" / "icustays.csv.gz").is_file()
    with gzip.open(hosp / "diagnoses_icd.csv.gz", "rt") as handle:
        assert handle.readline().strip() == "subject_id,hadm_id,seq_num,icd_code,icd_version"

    cohort = pd.read_csv(demo_cohort / "cohort.csv", dtype={"patient_id": str}, parse_dates=["index_time"])
    admissions = pd.read_csv(hosp / "admissions.csv.gz", dtype={"subject_id": str}, parse_dates=["admittime"])
    diagnoses = pd.read_csv(hosp / "diagnoses_icd.csv.gz", dtype={"subject_id": str})
    merged = diagnoses.merge(admissions[["hadm_id", "admittime"]], on="hadm_id").merge(
        cohort, left_on="subject_id", right_on="patient_id"
    )
    leak = set(demo_truth["planted"]["leak_diagnoses_after_index"])
    leaked = merged[merged["icd_code"].isin(leak)]
    assert len(leaked) > 0 and (leaked["admittime"] >= leaked["index_time"]).all()
    assert (leaked["label"] == 1).all()
    before = merged[merged["admittime"] < merged["index_time"]]
    assert not before["icd_code"].isin(leak).any()
    labs = pd.read_csv(hosp / "labevents.csv.gz")
    assert {"itemid", "valuenum", "valueuom", "charttime"} <= set(labs.columns)


@pytest.mark.slow
def test_pyhealth_mimic4_dataset_reads_every_ehr_patient(demo_cohort: Path, demo_truth: dict, tmp_path: Path) -> None:
    script = tmp_path / "load_with_pyhealth.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from pyhealth.datasets import MIMIC4Dataset

            if __name__ == "__main__":  # PyHealth starts Dask workers with the spawn method
                dataset = MIMIC4Dataset(
                    ehr_root={str(demo_cohort / "ehr")!r},
                    ehr_tables=["diagnoses_icd", "procedures_icd", "prescriptions", "labevents"],
                    cache_dir={str(tmp_path / "pyhealth-cache")!r},
                )
                events = dataset.global_event_df.collect()
                print("EVENT_TYPES", " ".join(sorted(events["event_type"].unique().to_list())))
                print("PATIENTS", " ".join(sorted(dataset.unique_patient_ids)))
            """
        )
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line.startswith(("PATIENTS", "EVENT")))
    with_ehr = {pid for pid, p in demo_truth["patients"].items() if p["present"]["ehr"]}
    assert set(lines["PATIENTS"].split()) == with_ehr
    assert {"diagnoses_icd", "procedures_icd", "prescriptions", "labevents", "patients"} <= set(
        lines["EVENT_TYPES"].split()
    )
