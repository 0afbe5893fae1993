"""Table modalities: wide/long reading, cleaning policies with counts, and the training-fitted alignment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clinfuse.kinds.table.config import TableModality
from clinfuse.kinds.table.source import TableAlignment, read_table
from clinfuse.platform.errors import ClinFuseError

WIDE = pd.DataFrame(
    {
        "patient_id": ["P1", "P2", "P3", "P4"],
        "GENE_A": [1.0, 2.0, 3.0, 4.0],
        "GENE_B": [10.0, np.nan, 30.0, 40.0],
        "GENE_C": [-1.5, 0.0, 2.5, 7.0],
    }
)


def _long(wide: pd.DataFrame) -> pd.DataFrame:
    return wide.melt(id_vars="patient_id", var_name="feature", value_name="value").dropna(subset=["value"])


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False)
    return path


def _csv(tmp_path: Path, text: str, name: str = "table.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _modality(path: Path, **options: object) -> TableModality:
    return TableModality(name="genomics", kind="table", path=path, **options)


def _read(path: Path, **options: object) -> tuple[pd.DataFrame, dict[str, int]]:
    return read_table(_modality(path, **options))


def _expected_wide() -> pd.DataFrame:
    expected = WIDE.set_index("patient_id").astype("float64")
    expected.index.name = "patient_id"
    return expected


# --- reading -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_wide_table_reads_as_numeric_patient_by_feature_frame(tmp_path: Path, suffix: str) -> None:
    frame, counts = _read(_write(WIDE, tmp_path / f"wide{suffix}"))
    pd.testing.assert_frame_equal(frame, _expected_wide())
    assert frame.index.name == "patient_id"
    assert all(isinstance(pid, str) for pid in frame.index)
    assert (frame.dtypes == "float64").all()
    assert counts == {
        "rows_read": 4, "rows_without_patient_id": 0, "duplicate_patient_rows": 0, "non_numeric_cells": 0,
        "non_finite_cells": 0, "non_finite_cells_by_feature": {}, "all_nan_columns": 0,
    }  # fmt: skip


@pytest.mark.parametrize("wide_suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("long_suffix", [".csv", ".tsv", ".parquet"])
def test_wide_and_long_layouts_give_the_same_frame(tmp_path: Path, wide_suffix: str, long_suffix: str) -> None:
    wide, _ = _read(_write(WIDE, tmp_path / f"wide{wide_suffix}"))
    long, counts = _read(_write(_long(WIDE), tmp_path / f"long{long_suffix}"), layout="long")
    pd.testing.assert_frame_equal(long.sort_index().sort_index(axis=1), wide.sort_index().sort_index(axis=1))
    assert counts["rows_read"] == 11  # 12 cells, one missing value row dropped from the long export
    assert counts["duplicate_entries"] == 0


def test_long_layout_with_custom_column_names(tmp_path: Path) -> None:
    long = _long(WIDE).rename(columns={"patient_id": "sample", "feature": "gene", "value": "tpm"})
    frame, _ = _read(
        _write(long, tmp_path / "long.csv"),
        layout="long",
        patient_id="sample",
        feature_column="gene",
        value_column="tpm",
    )
    pd.testing.assert_frame_equal(frame.sort_index(axis=1), _expected_wide())


def test_long_layout_without_feature_or_value_column_raises(tmp_path: Path) -> None:
    path = _write(_long(WIDE).rename(columns={"value": "tpm"}), tmp_path / "long.csv")
    with pytest.raises(ClinFuseError, match=r"long layout needs column\(s\) \['value'\]"):
        _read(path, layout="long")


def test_patient_ids_with_leading_zeros_stay_text(tmp_path: Path) -> None:
    path = _csv(tmp_path, "patient_id,GENE_A\n00123,1.5\n 0456 ,2.5\n")
    frame, _ = _read(path)
    assert list(frame.index) == ["00123", "0456"]
    long_path = _csv(tmp_path, "patient_id,feature,value\n00123,GENE_A,1.5\n0456,GENE_A,2.5\n", "long.csv")
    long, _ = _read(long_path, layout="long")
    assert sorted(long.index) == ["00123", "0456"]


def test_numeric_patient_ids_become_strings(tmp_path: Path) -> None:
    frame, _ = _read(_csv(tmp_path, "patient_id,GENE_A\n10024395,1\n10025026,2\n"))
    assert list(frame.index) == ["10024395", "10025026"]


def test_missing_patient_id_column_raises_naming_it(tmp_path: Path) -> None:
    path = _write(WIDE.rename(columns={"patient_id": "subject"}), tmp_path / "wide.csv")
    with pytest.raises(ClinFuseError) as caught:
        _read(path)
    message = str(caught.value)
    assert "table modality 'genomics' (wide.csv)" in message
    assert "patient id column 'patient_id' not found" in message
    assert "subject" in caught.value.fix
    frame, _ = _read(path, patient_id="subject")
    assert list(frame.index) == ["P1", "P2", "P3", "P4"]


def test_exclude_columns_are_dropped_before_the_numeric_check(tmp_path: Path) -> None:
    with_site = WIDE.assign(site=["north", "south", "north", "east"])
    path = _write(with_site, tmp_path / "wide.csv")
    with pytest.raises(ClinFuseError, match="column 'site'"):
        _read(path)
    frame, counts = _read(path, exclude_columns=("site", "not_there"))
    pd.testing.assert_frame_equal(frame, _expected_wide())
    assert counts["non_numeric_cells"] == 0


# --- duplicates ----------------------------------------------------------------------------------------------------

DUPLICATED = "patient_id,GENE_A,GENE_B\nP1,1,10\nP2,2,20\nP1,3,\nP3,4,40\nP2,6,60\n"


def test_duplicate_patient_rows_raise_with_policy_error(tmp_path: Path) -> None:
    with pytest.raises(ClinFuseError) as caught:
        _read(_csv(tmp_path, DUPLICATED))
    assert "2 duplicated patient row(s), the first at data row 3" in str(caught.value)
    assert "on_duplicate_patient" in caught.value.fix


def test_duplicate_patient_rows_are_averaged_with_policy_mean(tmp_path: Path) -> None:
    frame, counts = _read(_csv(tmp_path, DUPLICATED), on_duplicate_patient="mean")
    assert counts["duplicate_patient_rows"] == 2
    assert list(frame.index) == ["P1", "P2", "P3"]
    assert frame.loc["P1"].tolist() == [2.0, 10.0]  # the missing GENE_B does not count
    assert frame.loc["P2"].tolist() == [4.0, 40.0]
    assert frame.loc["P3"].tolist() == [4.0, 40.0]


def test_duplicate_patient_rows_keep_the_first_with_policy_first(tmp_path: Path) -> None:
    frame, counts = _read(_csv(tmp_path, DUPLICATED), on_duplicate_patient="first")
    assert counts["duplicate_patient_rows"] == 2
    assert list(frame.index) == ["P1", "P2", "P3"]
    assert frame.loc["P1"].tolist() == [1.0, 10.0]
    assert frame.loc["P2"].tolist() == [2.0, 20.0]


LONG_DUPLICATED = "patient_id,feature,value\nP1,A,1\nP1,A,3\nP2,A,5\nP1,B,7\nP2,B,8\nP2,B,10\n"


def test_long_duplicate_entries_raise_with_policy_error(tmp_path: Path) -> None:
    with pytest.raises(ClinFuseError, match=r"2 duplicated \(patient, feature\) entries"):
        _read(_csv(tmp_path, LONG_DUPLICATED), layout="long")


@pytest.mark.parametrize(("policy", "p1_a", "p2_b"), [("mean", 2.0, 9.0), ("first", 1.0, 8.0)])
def test_long_duplicate_entries_are_merged_and_counted(tmp_path: Path, policy: str, p1_a: float, p2_b: float) -> None:
    frame, counts = _read(_csv(tmp_path, LONG_DUPLICATED), layout="long", on_duplicate_patient=policy)
    assert counts["duplicate_entries"] == 2
    assert frame.loc["P1", "A"] == p1_a
    assert frame.loc["P2", "B"] == p2_b
    assert frame.loc["P2", "A"] == 5.0 and frame.loc["P1", "B"] == 7.0


# --- non-numeric values --------------------------------------------------------------------------------------------

NON_NUMERIC = "patient_id,GENE_A,GENE_B\nP1,1,10\nP2,n/a?,20\nP3,3,high\nP4,abc,40\n"


def test_non_numeric_values_raise_naming_the_column_with_policy_error(tmp_path: Path) -> None:
    with pytest.raises(ClinFuseError) as caught:
        _read(_csv(tmp_path, NON_NUMERIC))
    message = str(caught.value)
    assert "column 'GENE_A' has 2 non-numeric value(s), e.g. 'n/a?'" in message
    assert "on_non_numeric: coerce" in caught.value.fix


def test_non_numeric_values_become_missing_and_are_counted_with_policy_coerce(tmp_path: Path) -> None:
    frame, counts = _read(_csv(tmp_path, NON_NUMERIC), on_non_numeric="coerce")
    assert counts["non_numeric_cells"] == 3
    assert frame["GENE_A"].isna().tolist() == [False, True, False, True]
    assert frame["GENE_B"].isna().tolist() == [False, False, True, False]
    assert frame.loc["P3", "GENE_A"] == 3.0
    assert (frame.dtypes == "float64").all()


def test_empty_cells_are_missing_not_non_numeric(tmp_path: Path) -> None:
    frame, counts = _read(_csv(tmp_path, "patient_id,GENE_A,GENE_B\nP1,1,\nP2,,20\n"))
    assert counts["non_numeric_cells"] == 0
    assert frame.isna().sum().sum() == 2


def test_long_non_numeric_values_name_the_value_column(tmp_path: Path) -> None:
    path = _csv(tmp_path, "patient_id,feature,value\nP1,A,1\nP1,B,oops\nP2,A,2\nP2,B,3\n")
    with pytest.raises(ClinFuseError, match="column 'value' has 1 non-numeric value"):
        _read(path, layout="long")
    frame, counts = _read(path, layout="long", on_non_numeric="coerce")
    assert counts["non_numeric_cells"] == 1
    assert np.isnan(frame.loc["P1", "B"])
    assert frame.loc["P2", "B"] == 3.0


@pytest.mark.parametrize("duplicates", ["mean", "first"])
def test_non_numeric_policy_applies_when_duplicates_are_merged(tmp_path: Path, duplicates: str) -> None:
    path = _csv(tmp_path, "patient_id,GENE_A,GENE_B\nP1,x,10\nP2,2,20\nP3,y,30\nP3,5,zz\n")
    with pytest.raises(ClinFuseError, match="non-numeric"):
        _read(path, on_duplicate_patient=duplicates)
    frame, counts = _read(path, on_duplicate_patient=duplicates, on_non_numeric="coerce")
    assert counts["duplicate_patient_rows"] == 1
    assert np.isnan(frame.loc["P1", "GENE_A"])
    if duplicates == "mean":
        assert counts["non_numeric_cells"] == 3
        assert frame.loc["P3"].tolist() == [5.0, 30.0]
    else:  # the dropped duplicate's cells are never read
        assert counts["non_numeric_cells"] == 2
        assert np.isnan(frame.loc["P3", "GENE_A"]) and frame.loc["P3", "GENE_B"] == 30.0


# --- all-missing columns -------------------------------------------------------------------------------------------

ALL_NAN = "patient_id,GENE_A,EMPTY,GENE_B\nP1,1,,10\nP2,2,,20\nP3,3,,\n"


def test_all_nan_column_is_dropped_and_counted_with_policy_drop(tmp_path: Path) -> None:
    frame, counts = _read(_csv(tmp_path, ALL_NAN))
    assert list(frame.columns) == ["GENE_A", "GENE_B"]
    assert counts["all_nan_columns"] == 1


def test_all_nan_column_raises_naming_it_with_policy_error(tmp_path: Path) -> None:
    with pytest.raises(ClinFuseError) as caught:
        _read(_csv(tmp_path, ALL_NAN), on_all_nan_column="error")
    assert "1 column(s) hold no values, e.g. 'EMPTY'" in str(caught.value)
    assert "on_all_nan_column: drop" in caught.value.fix


def test_column_left_empty_by_coercion_counts_as_all_nan(tmp_path: Path) -> None:
    path = _csv(tmp_path, "patient_id,GENE_A,NOTE\nP1,1,see chart\nP2,2,pending\n")
    frame, counts = _read(path, on_non_numeric="coerce")
    assert list(frame.columns) == ["GENE_A"]
    assert counts == {
        "rows_read": 2, "rows_without_patient_id": 0, "duplicate_patient_rows": 0, "non_numeric_cells": 2,
        "non_finite_cells": 0, "non_finite_cells_by_feature": {}, "all_nan_columns": 1,
    }  # fmt: skip
    with pytest.raises(ClinFuseError, match="'NOTE'"):
        _read(path, on_non_numeric="coerce", on_all_nan_column="error")


LONG_ALL_NAN = "patient_id,feature,value\nP1,A,1\nP1,EMPTY,\nP2,A,2\nP2,EMPTY,\nP3,EMPTY,\n"


def test_long_all_nan_feature_is_dropped_and_counted_with_policy_drop(tmp_path: Path) -> None:
    frame, counts = _read(_csv(tmp_path, LONG_ALL_NAN), layout="long")
    assert list(frame.columns) == ["A"]
    assert counts["all_nan_columns"] == 1
    # a patient without any value is kept (as an empty row), just as in the wide layout
    assert sorted(frame.index) == ["P1", "P2", "P3"]
    assert frame.loc["P3"].isna().all()


def test_long_all_nan_feature_raises_with_policy_error(tmp_path: Path) -> None:
    with pytest.raises(ClinFuseError, match="1 column\\(s\\) hold no values, e.g. 'EMPTY'"):
        _read(_csv(tmp_path, LONG_ALL_NAN), layout="long", on_all_nan_column="error")


def test_long_and_wide_agree_on_all_nan_columns(tmp_path: Path) -> None:
    wide, wide_counts = _read(_csv(tmp_path, ALL_NAN, "wide.csv"))
    melted = pd.read_csv(tmp_path / "wide.csv").melt(id_vars="patient_id", var_name="feature", value_name="value")
    long, long_counts = _read(_write(melted, tmp_path / "long.csv"), layout="long")
    pd.testing.assert_frame_equal(long.sort_index(axis=1), wide.sort_index(axis=1))
    assert long_counts["all_nan_columns"] == wide_counts["all_nan_columns"] == 1


# --- alignment -----------------------------------------------------------------------------------------------------


def _features(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "f1": rng.normal(5.0, 2.0, n),
            "f2": rng.exponential(3.0, n),
            "f3": rng.integers(0, 4, n).astype(float),
        },
        index=pd.Index([f"P{i:03d}" for i in range(n)], name="patient_id"),
    )
    frame.iloc[::7, 1] = np.nan
    return frame


def test_fit_records_training_medians_means_and_stds() -> None:
    train = pd.DataFrame({"a": [1.0, 2.0, np.nan, 9.0], "b": [4.0, 4.0, 4.0, 4.0]})
    alignment = TableAlignment.fit(train)
    assert alignment.features == ["a", "b"]
    assert alignment.median == [2.0, 4.0]
    filled = np.array([1.0, 2.0, 2.0, 9.0])  # the missing cell counts as the median
    assert alignment.mean == pytest.approx([filled.mean(), 4.0])
    assert alignment.std == pytest.approx([filled.std(), 1.0])  # a constant column keeps scale 1


def test_fit_uses_only_the_frame_it_is_given() -> None:
    full = _features(60)
    train_ids = full.index[:40]
    alignment = TableAlignment.fit(full.loc[train_ids])

    changed = full.copy()
    changed.loc[full.index[40:]] = 1e6  # wildly different non-training patients
    changed.loc[full.index[40:], "f4"] = 3.0  # and a feature only they have
    refit = TableAlignment.fit(changed.loc[train_ids])
    assert refit.to_json() == alignment.to_json()
    # ... whereas fitting on all patients would have changed it
    assert TableAlignment.fit(changed).to_json() != alignment.to_json()


def test_features_without_training_values_are_left_out_of_the_panel() -> None:
    train = _features(20).assign(rare=np.nan)
    alignment = TableAlignment.fit(train)
    assert alignment.features == ["f1", "f2", "f3"]
    scoring = _features(5, seed=1).assign(rare=1.0)
    values, counts = alignment.transform(scoring)
    assert values.shape == (5, 3)
    assert counts["extra_features_ignored"] == 1


def test_normalised_training_features_have_zero_mean_and_unit_std() -> None:
    train = _features(50)
    alignment = TableAlignment.fit(train)
    values, counts = alignment.transform(train)
    assert values.dtype == np.float32
    assert values.shape == (50, 3)
    assert np.isfinite(values).all()
    np.testing.assert_allclose(values.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(values.std(axis=0), 1.0, atol=1e-5)
    assert counts == {
        "panel_features": 3,
        "missing_features_imputed": 0,
        "extra_features_ignored": 0,
        "imputed_cells": int(train.isna().sum().sum()),
        "z_scores_clipped": 0,
    }
    assert counts["imputed_cells"] == 8


def test_constant_training_feature_normalises_to_zero_not_nan() -> None:
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0], "k": [5.0, 5.0, 5.0]})
    values, _ = TableAlignment.fit(train).transform(train)
    assert np.isfinite(values).all()
    np.testing.assert_array_equal(values[:, 1], [0.0, 0.0, 0.0])


def test_transform_at_scoring_imputes_missing_features_and_ignores_extra_ones() -> None:
    train = pd.DataFrame({"a": [1.0, 3.0, 5.0, 7.0], "b": [10.0, 20.0, 30.0, 40.0], "c": [0.0, 1.0, 0.0, 1.0]})
    alignment = TableAlignment.fit(train)
    scoring = pd.DataFrame(
        {"extra": [99.0, 98.0, 97.0], "c": [1.0, np.nan, 0.0], "a": [3.0, 5.0, np.nan]},  # no 'b', new order
        index=["S1", "S2", "S3"],
    )
    values, counts = alignment.transform(scoring)
    assert counts == {
        "panel_features": 3,
        "missing_features_imputed": 1,
        "extra_features_ignored": 1,
        "imputed_cells": 3 + 2,  # the whole 'b' column plus one cell each in 'a' and 'c'
        "z_scores_clipped": 0,
    }
    assert values.shape == (3, 3)  # panel order a, b, c; 'extra' dropped
    mean, std, median = np.array(alignment.mean), np.array(alignment.std), np.array(alignment.median)
    expected = (
        np.array([[3.0, median[1], 1.0], [5.0, median[1], median[2]], [median[0], median[1], 0.0]]) - mean
    ) / std
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    # an imputed feature sits where the training median sits
    assert values[0, 1] == pytest.approx((25.0 - 25.0) / std[1])


def test_transform_of_a_row_equals_its_training_row() -> None:
    train = _features(30)
    alignment = TableAlignment.fit(train)
    all_values, _ = alignment.transform(train)
    one, counts = alignment.transform(train.iloc[[4]])
    np.testing.assert_allclose(one[0], all_values[4])
    assert counts["imputed_cells"] == int(train.iloc[[4]].isna().sum().sum())


def test_alignment_json_round_trip() -> None:
    train = _features(30)
    alignment = TableAlignment.fit(train)
    data = json.loads(json.dumps(alignment.to_json()))  # must be plain JSON
    assert set(data) == {"features", "median", "mean", "std"}
    restored = TableAlignment.from_json(data)
    assert restored.features == alignment.features
    assert restored.median == alignment.median
    assert restored.mean == alignment.mean
    assert restored.std == alignment.std
    scoring = _features(10, seed=3).drop(columns=["f3"])
    original_values, original_counts = alignment.transform(scoring)
    restored_values, restored_counts = restored.transform(scoring)
    np.testing.assert_array_equal(restored_values, original_values)
    assert restored_counts == original_counts


def test_read_then_align_end_to_end(tmp_path: Path) -> None:
    frame, _ = _read(_write(WIDE, tmp_path / "wide.parquet"))
    alignment = TableAlignment.fit(frame.loc[["P1", "P2", "P3"]])
    values, counts = alignment.transform(frame.loc[["P4"]])
    assert alignment.features == ["GENE_A", "GENE_B", "GENE_C"]
    assert alignment.median[1] == 20.0  # median of the training values 10 and 30
    assert counts["imputed_cells"] == 0
    assert values[0, 0] == pytest.approx((4.0 - 2.0) / np.std([1.0, 2.0, 3.0]))
