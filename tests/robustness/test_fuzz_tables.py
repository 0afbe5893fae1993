"""Property-based fuzz of table inputs: random cohort and genomics CSVs through `clinfuse ingest` (in-process).

For every example: exit 0 with a report whose features and alignment are finite, or exit 2 with one `error:`
line; never a traceback; and a previous cache at --out is byte-identical after a failure. Examples are
derandomised (the same ones on every run) so a failure reproduces.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

SPLITS = ["train"] * 6 + ["val", "val", "test", "test"]
IDS = [f"P{i}" for i in range(len(SPLITS))]
FUZZ = settings(settings.get_profile("robustness"), max_examples=40)  # see tests/robustness/conftest.py

# ids a real export holds: the cohort's own, NA-like text, blanks, numbers with leading zeros, unicode, commas
ID_POOL = [*IDS, "NA", "None", "nan", "", "  ", "007", "7", "P1 ", "Pé", "P,1", '"P2"', "P\t3"]
CELL_TEXT = ["inf", "-inf", "Infinity", "NaN", "nan", "", "1e400", "-1e400", "1e-320", "3.5e38", "-3.4e38",
             "abc", "1,5", "0x1F", " 7 ", "NA", "None", "TRUE", "1e308", "-0", "5e-324"]  # fmt: skip
FEATURE_NAMES = ["g1", "g2", "g3", "g1", "", "patient_id", "label", "Unnamed: 3", "x y", "é"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, probe) -> Path:
    """A valid tiny cohort and the cache ingested from it: each example starts from a copy of both."""
    root = tmp_path_factory.mktemp("fuzz-tables")
    rows = [f"{pid},{i % 2},2150-01-01 08:00:00,{split},{40 + i}" for i, (pid, split) in enumerate(zip(IDS, SPLITS))]  # noqa: B905, E501  # fmt: skip
    (root / "cohort.csv").write_text("patient_id,label,index_time,split,age\n" + "\n".join(rows) + "\n")
    values = np.random.default_rng(0).normal(size=(len(IDS), 3)).round(3)
    genomics = pd.DataFrame(values, columns=["g1", "g2", "g3"]).assign(patient_id=IDS)
    genomics[["patient_id", "g1", "g2", "g3"]].to_csv(root / "genomics.csv", index=False)
    (root / "cohort.yaml").write_text(_config_text({}))
    outcome = probe.run_main(["ingest", "--config", str(root / "cohort.yaml"), "--out", str(root / "cache")])
    assert outcome.code == 0, outcome.stderr
    return root


def _config_text(options: dict) -> str:
    table = {"name": "genomics", "kind": "table", "path": "genomics.csv", **options}
    config = {"name": "fuzz", "cohort": {"path": "cohort.csv", "split": "split", "age": "age"}, "modalities": [table]}
    return json.dumps(config)  # YAML is a superset of JSON


def _strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _check_ingest(probe, baseline: Path, files: dict[str, str], options: dict) -> None:
    """Ingest the baseline cohort with `files` replaced, into a copy of the baseline cache; assert the contract."""
    with tempfile.TemporaryDirectory(dir=baseline) as work:
        root = Path(work)
        for name in ("cohort.csv", "genomics.csv"):
            (root / name).write_text(files.get(name) or (baseline / name).read_text())
        (root / "cohort.yaml").write_text(_config_text(options))
        shutil.copytree(baseline / "cache", root / "cache")
        before = probe.snapshot(root / "cache")
        outcome = probe.run_main(["ingest", "--config", str(root / "cohort.yaml"), "--out", str(root / "cache")])
        probe.assert_ok_or_user_error(outcome)
        event(f"exit {outcome.code}")  # shown by --hypothesis-show-statistics: both outcomes must be explored
        if outcome.code != 0:
            assert probe.snapshot(root / "cache") == before, "a failed ingest changed the previous cache"
            return
        report = _strict_json(root / "cache" / "ingest_report.json")
        ages = pd.read_parquet(root / "cache" / "cohort.parquet")["age"].dropna()
        assert ages.between(0, 150).all(), "an impossible age reached the cache"
        assert 0 <= report["modalities"]["genomics"]["patients_present"] <= report["cohort"]["patients"]
        modality = root / "cache" / "modalities" / "genomics"
        _strict_json(modality / "alignment.json")
        features = pd.read_parquet(modality / "features.parquet").drop(columns="patient")
        assert np.isfinite(features.to_numpy(dtype=np.float64)).all()


clean_cells = st.floats(-5, 5).map(lambda x: f"{x:.3f}")
odd_cells = st.one_of(
    st.sampled_from(CELL_TEXT),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**40), 10**40).map(str),
    st.text(max_size=6),
)


def _row_is_odd(draw: st.DrawFn) -> bool:
    """One row in four is odd, so that most examples stay close enough to valid to reach the later stages."""
    return draw(st.integers(0, 3)) == 0


@st.composite
def wide_tables(draw: st.DrawFn) -> str:
    """A wide genomics CSV: a header of (sometimes odd or repeated) names, rows of odd ids and cells, some ragged."""
    features = ["g1", "g2", "g3"] if draw(st.booleans()) else draw(st.lists(st.sampled_from(FEATURE_NAMES), max_size=4))
    lines = [",".join(["patient_id", *features])]
    for i in range(draw(st.integers(0, 12))):
        if not _row_is_odd(draw):
            lines.append(",".join([IDS[i % len(IDS)], *(draw(clean_cells) for _ in features)]))
            continue
        width = len(features) + draw(st.sampled_from([0, 0, -1, 1]))
        row = [draw(st.sampled_from(ID_POOL))] + [draw(st.one_of(clean_cells, odd_cells)) for _ in range(max(width, 0))]
        lines.append(",".join(row))
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n", "\r\n"]))


@st.composite
def long_tables(draw: st.DrawFn) -> str:
    """A long genomics CSV (patient_id, feature, value) with odd ids, features and values."""
    lines = ["patient_id,feature,value"]
    for i in range(draw(st.integers(0, 30))):
        if not _row_is_odd(draw):
            lines.append(f"{IDS[i % len(IDS)]},g{i // len(IDS)},{draw(clean_cells)}")
            continue
        fields = [st.sampled_from(ID_POOL), st.sampled_from(FEATURE_NAMES), st.one_of(clean_cells, odd_cells)]
        lines.append(",".join(draw(field) for field in fields))
    return "\n".join(lines) + "\n"


table_options = st.fixed_dictionaries(
    {},
    optional={
        "on_duplicate_patient": st.sampled_from(["error", "mean", "first"]),
        "on_non_numeric": st.sampled_from(["error", "coerce"]),
        "on_all_nan_column": st.sampled_from(["error", "drop"]),
        "exclude_columns": st.lists(st.sampled_from(FEATURE_NAMES), max_size=2),
    },
)


@FUZZ
@given(table=wide_tables(), options=table_options)
@example(table="patient_id,g1\nP0,0.000\n", options={"exclude_columns": ["patient_id"]})  # found: a KeyError
def test_fuzzed_wide_genomics_tables(probe, baseline: Path, table: str, options: dict) -> None:
    _check_ingest(probe, baseline, {"genomics.csv": table}, options)


@FUZZ
@given(table=long_tables(), options=table_options)
def test_fuzzed_long_genomics_tables(probe, baseline: Path, table: str, options: dict) -> None:
    _check_ingest(probe, baseline, {"genomics.csv": table}, {**options, "layout": "long"})


LABELS = ["0", "1", "1", "0", "", "2", "-1", "1.0", "inf", "nan", "yes", "1e400"]
TIMES = ["2150-01-01 08:00:00", "2150-01-01", "2150-13-01", "", "inf", "1", "99999-01-01", "2150-03-01T08:00:00+05:00",
         "2150-03-01T08:00:00Z", "yesterday"]  # fmt: skip
AGES = ["40", "", "unknown", "inf", "-1", "151", "1e400", "150", "0", "nan", "NA", "35.5"]


@st.composite
def cohort_tables(draw: st.DrawFn) -> str:
    """A cohort CSV whose rows are mostly valid; an odd row has an odd id, label, index time, split or age."""
    lines = ["patient_id,label,index_time,split,age"]
    for i in range(draw(st.integers(0, 12))):
        row = [IDS[i % len(IDS)], str(i % 2), TIMES[0], SPLITS[i % len(SPLITS)], "50"]
        if _row_is_odd(draw):
            field = draw(st.integers(0, 4))
            row[field] = draw(
                st.sampled_from([ID_POOL, LABELS, TIMES, ["", "TRAIN", "validation", "nan"], AGES][field])
            )
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


@FUZZ
@given(cohort=cohort_tables())
def test_fuzzed_cohort_tables(probe, baseline: Path, cohort: str) -> None:
    _check_ingest(probe, baseline, {"cohort.csv": cohort}, {})
