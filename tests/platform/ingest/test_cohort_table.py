"""The cohort table: validation of ids, labels and index times, and the patient-level, stratified split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clinfuse.platform.config import CohortConfig
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.ingest.cohort_table import SPLITS, Cohort, load_cohort


def _frame(n: int = 200, prevalence: float = 0.3, seed: int = 0) -> pd.DataFrame:
    """A synthetic cohort: ids with leading zeros, a fixed number of positives, ISO index times."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=int)
    labels[: round(n * prevalence)] = 1
    rng.shuffle(labels)
    times = pd.Timestamp("2150-01-01 08:00") + pd.to_timedelta(rng.integers(0, 365 * 24, n), unit="h")
    return pd.DataFrame(
        {
            "patient_id": [f"{i:06d}" for i in range(1, n + 1)],
            "label": labels,
            "index_time": times.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )


def _config(path: Path, fractions: dict | None = None, **cohort: str) -> CohortConfig:
    return CohortConfig.model_validate(
        {
            "name": "unit",
            "cohort": {"path": path, **cohort},
            "modalities": [{"name": "genomics", "kind": "table", "path": path}],
            **({"split": fractions} if fractions else {}),
        }
    )


def _load(
    tmp_path: Path, frame: pd.DataFrame, name: str = "cohort.csv", fractions: dict | None = None, **cohort: str
) -> Cohort:
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="\t" if name.endswith(".tsv") else ",", index=False)
    return load_cohort(_config(path, fractions, **cohort))


def _assignment(cohort: Cohort) -> dict[str, str]:
    return dict(zip(cohort.table["patient_id"], cohort.table["split"], strict=True))


def test_table_columns_types_and_order(tmp_path: Path) -> None:
    frame = _frame(60)
    cohort = _load(tmp_path, frame)
    table = cohort.table
    assert list(table.columns) == ["patient_id", "label", "index_time", "split"]
    assert cohort.patient_ids == frame["patient_id"].tolist()  # file order, ids kept as text
    assert cohort.patient_ids[0] == "000001"
    assert table["label"].tolist() == frame["label"].tolist()
    assert table["label"].dtype == np.int64
    assert pd.api.types.is_datetime64_any_dtype(table["index_time"])
    assert table["index_time"].dt.tz is None
    assert table["index_time"].iloc[0] == pd.Timestamp(frame["index_time"].iloc[0])
    assert list(table.index) == list(range(60))


def test_optional_sex_and_age_are_normalised(tmp_path: Path) -> None:
    frame = _frame(30)
    frame["gender"] = ["female", " m", None, "F", "Male", "f"] * 5
    frame["age_years"] = ["61", "57.5", "unknown", "", "80", "44"] * 5
    table = _load(tmp_path, frame, sex="gender", age="age_years").table
    assert list(table.columns) == ["patient_id", "label", "index_time", "sex", "age", "split"]
    assert table["sex"].iloc[:2].tolist() == ["F", "M"]
    assert pd.isna(table["sex"].iloc[2])
    assert table["sex"].iloc[3:6].tolist() == ["F", "M", "F"]
    ages = table["age"].iloc[:6]
    assert ages.iloc[0] == 61 and ages.iloc[1] == 57.5 and ages.iloc[4] == 80
    assert ages.iloc[2:4].isna().all()


def test_custom_column_names(tmp_path: Path) -> None:
    frame = _frame(40).rename(columns={"patient_id": "mrn", "label": "died", "index_time": "admitted"})
    table = _load(tmp_path, frame, patient_id="mrn", label="died", index_time="admitted").table
    assert list(table.columns) == ["patient_id", "label", "index_time", "split"]
    assert table["patient_id"].tolist() == frame["mrn"].tolist()
    assert table["label"].tolist() == frame["died"].tolist()


@pytest.mark.parametrize("name", ["cohort.tsv", "cohort.parquet"])
def test_tsv_and_parquet_read_like_csv(tmp_path: Path, name: str) -> None:
    frame = _frame(50)
    expected = _load(tmp_path, frame).table
    other = _load(tmp_path, frame, name=name).table
    pd.testing.assert_frame_equal(other, expected, check_dtype=False)


def test_patient_ids_are_stripped(tmp_path: Path) -> None:
    frame = _frame(20)
    frame.loc[0, "patient_id"] = "  000001 "
    assert _load(tmp_path, frame).patient_ids[0] == "000001"


@pytest.mark.parametrize("duplicate", ["000002", " 000002 "])
def test_duplicate_patient_ids_raise(tmp_path: Path, duplicate: str) -> None:
    frame = _frame(20)
    frame.loc[5, "patient_id"] = duplicate
    with pytest.raises(ClinFuseError, match=r"1 duplicated patient id\(s\) in 'patient_id'"):
        _load(tmp_path, frame)


@pytest.mark.parametrize("empty", [None, "   "])
def test_empty_patient_ids_raise(tmp_path: Path, empty: str | None) -> None:
    frame = _frame(20)
    frame["patient_id"] = frame["patient_id"].astype(object)
    frame.loc[3, "patient_id"] = empty
    with pytest.raises(ClinFuseError, match="empty patient ids"):
        _load(tmp_path, frame)


@pytest.mark.parametrize(
    ("bad", "shown"),
    [(2, "2"), (-1, "-1"), ("yes", "'yes'"), (None, "nan"), (0.5, "0.5")],
    ids=["two", "minus-one", "text", "missing", "fraction"],
)
def test_non_binary_labels_raise_naming_the_column(tmp_path: Path, bad: object, shown: str) -> None:
    frame = _frame(20).rename(columns={"label": "outcome"})
    frame["outcome"] = frame["outcome"].astype(object)
    frame.loc[4, "outcome"] = bad
    with pytest.raises(ClinFuseError) as caught:
        _load(tmp_path, frame, label="outcome")
    message = str(caught.value)
    assert "cohort label column 'outcome' must hold 0/1" in message
    assert "found 1 other value(s)" in message
    assert shown in message


def test_float_labels_zero_and_one_are_accepted(tmp_path: Path) -> None:
    frame = _frame(40)
    frame["label"] = frame["label"].astype(float)
    table = _load(tmp_path, frame).table
    assert table["label"].dtype == np.int64
    assert set(table["label"]) == {0, 1}


@pytest.mark.parametrize("bad", ["not a date", "2150-13-45 08:00", None])
def test_unparseable_index_time_raises_naming_the_column(tmp_path: Path, bad: str | None) -> None:
    frame = _frame(20).rename(columns={"index_time": "t0"})
    frame["t0"] = frame["t0"].astype(object)
    frame.loc[7, "t0"] = bad
    frame.loc[8, "t0"] = bad
    with pytest.raises(ClinFuseError) as caught:
        _load(tmp_path, frame, index_time="t0")
    message = str(caught.value)
    assert "cohort index time column 't0' has 2 unparseable value(s)" in message
    assert "ISO" in caught.value.fix


def test_index_times_in_mixed_formats_parse(tmp_path: Path) -> None:
    frame = _frame(20)
    frame.loc[0, "index_time"] = "2150-03-01"
    frame.loc[1, "index_time"] = "2150-03-01T08:30:00"
    times = _load(tmp_path, frame).table["index_time"]
    assert times.iloc[0] == pd.Timestamp("2150-03-01 00:00")
    assert times.iloc[1] == pd.Timestamp("2150-03-01 08:30")


@pytest.mark.parametrize(
    "stamps",
    [
        ["2150-01-10 08:00:00+01:00", "2150-07-10 09:30:00+01:00"],
        ["2150-01-10 08:00:00+01:00", "2150-07-10 09:30:00+02:00"],  # either side of a DST change
        ["2150-01-10 08:00:00+01:00", "2150-07-10 09:30:00"],
    ],
    ids=["one-offset", "two-offsets", "aware-and-naive"],
)
def test_index_times_with_utc_offsets_become_naive_wall_clock_times(tmp_path: Path, stamps: list[str]) -> None:
    frame = _frame(20)
    frame["index_time"] = stamps * 10
    times = _load(tmp_path, frame).table["index_time"]
    assert pd.api.types.is_datetime64_any_dtype(times)
    assert times.dt.tz is None
    assert times.iloc[0] == pd.Timestamp("2150-01-10 08:00")
    assert times.iloc[1] == pd.Timestamp("2150-07-10 09:30")


def test_cohort_accessors(tmp_path: Path) -> None:
    frame = _frame(60)
    cohort = _load(tmp_path, frame)
    times = cohort.index_times()
    assert list(times) == frame["patient_id"].tolist()
    assert times["000003"] == pd.Timestamp(frame.loc[2, "index_time"])
    for split in SPLITS:
        assert cohort.ids_in(split) == set(cohort.table.loc[cohort.table["split"] == split, "patient_id"])
    assert cohort.ids_in("holdout") == set()


def test_stratified_split_sizes_are_70_15_15(tmp_path: Path) -> None:
    cohort = _load(tmp_path, _frame(200))
    sizes = cohort.table["split"].value_counts().to_dict()
    assert sizes == {"train": 140, "val": 30, "test": 30}


def test_custom_split_fractions_are_used(tmp_path: Path) -> None:
    cohort = _load(tmp_path, _frame(200), fractions={"train": 0.5, "val": 0.3, "test": 0.2, "seed": 3})
    sizes = cohort.table["split"].value_counts().to_dict()
    assert sizes == {"train": 100, "val": 60, "test": 40}


def test_stratified_split_keeps_label_prevalence(tmp_path: Path) -> None:
    cohort = _load(tmp_path, _frame(400, prevalence=0.25))
    prevalence = cohort.table.groupby("split")["label"].mean()
    assert set(prevalence.index) == set(SPLITS)
    for split, value in prevalence.items():
        assert abs(value - 0.25) <= 0.02, f"{split}: prevalence {value:.3f}"


def test_every_patient_is_in_exactly_one_split(tmp_path: Path) -> None:
    frame = _frame(223, prevalence=0.37)
    cohort = _load(tmp_path, frame)
    assert cohort.table["split"].notna().all()
    assert set(cohort.table["split"]) == set(SPLITS)
    train, val, test = (cohort.ids_in(s) for s in SPLITS)
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(frame["patient_id"])
    assert len(train) + len(val) + len(test) == len(frame)


def test_same_seed_gives_the_same_split_and_another_seed_a_different_one(tmp_path: Path) -> None:
    frame = _frame(200)
    first = _assignment(_load(tmp_path, frame, fractions={"seed": 5}))
    again = _assignment(_load(tmp_path, frame, fractions={"seed": 5}))
    other = _assignment(_load(tmp_path, frame, fractions={"seed": 6}))
    assert first == again
    assert first != other
    moved = sum(first[p] != other[p] for p in first)
    assert moved > 20  # a reshuffle, not a one-patient difference


def test_too_few_patients_of_a_label_raise(tmp_path: Path) -> None:
    frame = _frame(40, prevalence=0.0)
    frame.loc[:1, "label"] = 1  # two positives
    with pytest.raises(ClinFuseError, match="at least 3 patients of each label"):
        _load(tmp_path, frame)


def test_cohort_too_small_for_every_split_raises_clinfuse_error(tmp_path: Path) -> None:
    frame = _frame(6, prevalence=0.5)  # 3 of each label: train 4, val 1, test 1 cannot all hold both labels
    with pytest.raises(ClinFuseError, match="too small") as caught:
        _load(tmp_path, frame)
    assert "split column" in caught.value.fix


def test_cohort_split_column_is_honoured(tmp_path: Path) -> None:
    frame = _frame(30)
    given = ["Train", " val ", "TEST"] * 10
    frame["fold"] = given
    cohort = _load(tmp_path, frame, split="fold")
    assert cohort.table["split"].tolist() == [g.strip().lower() for g in given]
    # the configured fractions and seed play no part
    assert _assignment(
        _load(tmp_path, frame, fractions={"train": 0.5, "val": 0.25, "test": 0.25, "seed": 9}, split="fold")
    ) == _assignment(cohort)


def test_cohort_split_column_may_hold_one_label_only_in_a_split(tmp_path: Path) -> None:
    frame = _frame(10, prevalence=0.2)  # too small to stratify, but a given split needs no stratification
    frame["fold"] = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    cohort = _load(tmp_path, frame, split="fold")
    assert cohort.table["split"].value_counts().to_dict() == {"train": 6, "val": 2, "test": 2}


@pytest.mark.parametrize(("bad", "shown"), [("holdout", "'holdout'"), ("validation", "'validation'"), (None, "'nan'")])
def test_bad_values_in_the_split_column_raise(tmp_path: Path, bad: str | None, shown: str) -> None:
    frame = _frame(30)
    frame["fold"] = ["train", "val", "test"] * 10
    frame["fold"] = frame["fold"].astype(object)
    frame.loc[4, "fold"] = bad
    with pytest.raises(ClinFuseError) as caught:
        _load(tmp_path, frame, split="fold")
    message = str(caught.value)
    assert "cohort split column 'fold' has unknown value(s)" in message
    assert shown in message
