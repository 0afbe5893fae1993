"""The real-cohort writers (tests/benchmarks/real_cohorts.py): horizon labels, modalities, a loadable cohort."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clinfuse.kinds.table.source import read_table
from clinfuse.platform.config import load_cohort_config
from clinfuse.platform.ingest.cohort_table import load_cohort


def _sibling(name: str):
    """Benchmark scripts are not a package: load real_cohorts.py by path (pytest runs with importlib mode)."""
    spec = importlib.util.spec_from_file_location(f"clinfuse_bench_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


real_cohorts = _sibling("real_cohorts")


def test_horizon_label_keeps_events_before_and_follow_up_past_the_horizon() -> None:
    frame = pd.DataFrame({"time": [1.0, 5.0, 6.0, 2.0, 5.0, 9.0], "event": [1, 1, 1, 0, 0, 0]}, index=list("abcdef"))
    label = real_cohorts.horizon_label(frame, 5.0)
    # a: event before; b: event at the horizon; c: event after (0); d: censored before (dropped); e, f: followed
    assert label.to_dict() == {"a": 1, "b": 1, "c": 0, "e": 0, "f": 0}


def test_one_hot_names_are_distinct_identifiers() -> None:
    frame = pd.DataFrame({"fac_Diam": ["<=2cm", ">2cm", None], "fac_income": ["$11-$25k", ">$50k", "under $11k"]})
    encoded = real_cohorts.one_hot(frame, ["fac_Diam", "fac_income"])
    assert list(encoded.columns) == ["fac_Diam_le2cm", "fac_Diam_gt2cm", "fac_income_11_25k", "fac_income_gt50k",
                                     "fac_income_under_11k"]  # fmt: skip
    assert encoded.iloc[2, :2].tolist() == [0.0, 0.0]  # missing: no level


@pytest.fixture(scope="module")
def nki70_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nki70")
    real_cohorts.write_cohort("nki70", out, folds_seed=0)
    return out


def test_nki70_labels_follow_the_five_year_horizon(nki70_dir: Path) -> None:
    raw = real_cohorts._survset("nki70")
    table = pd.read_csv(nki70_dir / "cohort.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert set(table["label"]) == {0, 1}
    kept = raw.loc[table.index]
    censored_early = (kept["event"] == 0) & (kept["time"] < 5.0)
    assert not censored_early.any()
    expected = ((kept["event"] == 1) & (kept["time"] <= 5.0)).astype(int)
    assert table["label"].equals(expected.rename("label"))
    dropped = raw.drop(index=table.index)
    assert ((dropped["event"] == 0) & (dropped["time"] < 5.0)).all()
    assert (len(table), int(table["label"].sum())) == (139, 34)
    assert sorted(np.bincount(table[real_cohorts.FOLD_COLUMN])) == [27, 28, 28, 28, 28]


def test_nki70_modalities_are_disjoint_and_cover_the_features(nki70_dir: Path) -> None:
    genomics = pd.read_csv(nki70_dir / "genomics.csv", index_col="patient_id")
    clinical = pd.read_csv(nki70_dir / "clinical.csv", index_col="patient_id")
    assert not set(genomics.columns) & set(clinical.columns)
    raw = real_cohorts._survset("nki70")
    genes = [c.removeprefix("num_") for c in raw.columns if c.startswith("num_") and c != "num_Age"]
    assert list(genomics.columns) == genes and len(genes) == 70
    levels = sum(raw[c].nunique() for c in raw.columns if c.startswith("fac_"))
    assert len(clinical.columns) == 1 + levels and "Age" in clinical.columns
    assert all(clinical[c].isin([0.0, 1.0]).all() for c in clinical.columns if c != "Age")


def test_nki70_configs_load_and_fold_split_is_the_fold(nki70_dir: Path) -> None:
    config = load_cohort_config(nki70_dir / "cohort.yaml")
    assert [(m.name, m.kind) for m in config.modalities] == [("genomics", "table"), ("clinical", "table")]
    for modality in config.modalities:
        frame, counts = read_table(modality)
        assert frame.shape[0] == 139 and counts["non_numeric_cells"] == 0
    fold_config = load_cohort_config(real_cohorts.write_fold_config(nki70_dir, 2, seed=0))
    cohort = load_cohort(fold_config).table
    folds = pd.read_csv(nki70_dir / "cohort.csv", dtype={"patient_id": str})
    assert cohort["patient_id"].tolist() == folds["patient_id"].tolist()
    assert (cohort["split"] == "test").tolist() == (folds[real_cohorts.FOLD_COLUMN] == 2).tolist()
    val = cohort[cohort["split"] == "val"]
    assert len(val) == int(np.ceil(0.15 * (cohort["split"] != "test").sum())) and set(val["label"]) == {0, 1}
