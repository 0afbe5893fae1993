"""Property-based fuzz of cohort.yaml: a valid config with keys dropped, added or given values of other types,
odd paths and odd text, run through `clinfuse ingest` (in-process).

For every example: exit 0 with a report, or exit 2 with one `error:` line; never a traceback; and a previous
cache at --out is byte-identical after a failure. Examples are derandomised so a failure reproduces.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

SPLITS = ["train"] * 6 + ["val", "val", "test", "test"]
IDS = [f"P{i}" for i in range(len(SPLITS))]
FUZZ = settings(settings.get_profile("robustness"), max_examples=150)  # see tests/robustness/conftest.py
VALID: dict[str, Any] = {
    "name": "fuzz",
    "cohort": {"path": "cohort.csv", "patient_id": "patient_id", "label": "label", "index_time": "index_time",
               "split": "split", "sex": None, "age": "age"},
    "split": {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 0},
    "pseudonymise_ids": True,
    "modalities": [{"name": "genomics", "kind": "table", "path": "genomics.csv", "layout": "wide",
                    "patient_id": "patient_id", "on_duplicate_patient": "error", "on_non_numeric": "error",
                    "on_all_nan_column": "drop"}],
}  # fmt: skip
# paths a mistaken config holds; never one that would scan or read something large ("/", a home folder, /proc)
PATHS = ["cohort.csv", "genomics.csv", "missing.csv", "../cohort.csv", "sub/../genomics.csv", "", ".",
         "cohort.yaml", "a" * 300, "x/" * 200 + "y", "/etc/passwd", "/dev/null", "genomics.csv/", "COHORT.CSV",
         "data\x00.csv"]  # fmt: skip
KEYS: list[tuple[Any, ...]] = [
    ("name",), ("cohort",), ("split",), ("pseudonymise_ids",), ("modalities",), ("modalities", 0),
    *[("cohort", key) for key in VALID["cohort"]], *[("split", key) for key in VALID["split"]],
    *[("modalities", 0, key) for key in VALID["modalities"][0]],
    ("modalities", 0, "exclude_columns"), ("modalities", 0, "feature_column"), ("modalities", 0, "value_column"),
]  # fmt: skip
COLUMN_NAMES = ["patient_id", "label", "index_time", "split", "age", "g1", "missing", ""]
# values some key accepts, so that a good share of examples gets past validation into the ingest itself
PLAUSIBLE = [None, True, False, 0, 1, 7, 0.25, 0.5, "fuzz", "genomics", "g1", "patient_id", "label", "index_time",
             "split", "age", "drop", "first", "mean", "coerce", "error", "wide", "table", "cohort.csv", "genomics.csv",
             ["g1"], ["g2", "g3"]]  # fmt: skip
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(PATHS),
    st.sampled_from(COLUMN_NAMES),
    st.sampled_from(["table", "ehr", "dicom", "TABLE", "wide", "long", "mean", "first", "coerce", "drop", "error"]),
    st.lists(st.sampled_from(COLUMN_NAMES), max_size=3),
    st.dictionaries(st.sampled_from(["path", "kind", "name", "x"]), st.sampled_from(PATHS), max_size=2),
)
values = st.one_of(st.sampled_from(PLAUSIBLE), anything)
mutations = st.tuples(st.sampled_from(["set", "set", "delete", "add"]), st.sampled_from(KEYS), values)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, probe) -> Path:
    """A valid tiny cohort and the cache ingested from it: each example starts from a copy of the cache."""
    root = tmp_path_factory.mktemp("fuzz-config")
    rows = [f"{pid},{i % 2},2150-01-01 08:00:00,{split},{40 + i}" for i, (pid, split) in enumerate(zip(IDS, SPLITS))]  # noqa: B905, E501  # fmt: skip
    (root / "cohort.csv").write_text("patient_id,label,index_time,split,age\n" + "\n".join(rows) + "\n")
    values = np.random.default_rng(0).normal(size=(len(IDS), 3)).round(3)
    genomics = pd.DataFrame(values, columns=["g1", "g2", "g3"])
    genomics.insert(0, "patient_id", IDS)
    genomics.to_csv(root / "genomics.csv", index=False)
    (root / "sub").mkdir()
    (root / "cohort.yaml").write_text(yaml.safe_dump(VALID))
    outcome = probe.run_main(["ingest", "--config", str(root / "cohort.yaml"), "--out", str(root / "cache")])
    assert outcome.code == 0, outcome.stderr
    return root


def _mutated(config: dict, changes: list[tuple[str, tuple[Any, ...], Any]]) -> dict:
    """`config` with each change applied where its key path still leads to a mapping or list."""
    config = copy.deepcopy(config)
    for action, key, value in changes:
        parent: Any = config
        for part in key[:-1]:
            if not isinstance(parent, dict | list) or not _has(parent, part):
                break
            parent = parent[part]
        else:
            last = key[-1]
            if action == "add" and isinstance(parent, dict):
                parent[f"{last}_extra"] = value  # an unknown (misspelt) key
            elif action == "delete" and _has(parent, last) and isinstance(parent, dict | list):
                del parent[last]
            elif (
                action == "set" and isinstance(parent, dict | list) and (isinstance(parent, dict) or _has(parent, last))
            ):
                parent[last] = value
    return config


def _has(container: Any, part: Any) -> bool:
    return part in container if isinstance(container, dict) else isinstance(part, int) and part < len(container)


def _check_ingest(probe, baseline: Path, config_text: str | bytes) -> None:
    """Ingest with this cohort.yaml into a copy of the baseline cache; assert the contract."""
    with tempfile.TemporaryDirectory(dir=baseline) as work:
        root = Path(work)
        for name in ("cohort.csv", "genomics.csv"):
            shutil.copy(baseline / name, root / name)
        (root / "sub").mkdir()
        config = root / "cohort.yaml"
        config.write_bytes(config_text if isinstance(config_text, bytes) else config_text.encode())
        shutil.copytree(baseline / "cache", root / "cache")
        before = probe.snapshot(root / "cache")
        outcome = probe.run_main(["ingest", "--config", str(config), "--out", str(root / "cache")])
        probe.assert_ok_or_user_error(outcome)
        event(f"exit {outcome.code}")  # shown by --hypothesis-show-statistics: both outcomes must be explored
        if outcome.code != 0:
            assert probe.snapshot(root / "cache") == before, "a failed ingest changed the previous cache"
        else:
            json.loads((root / "cache" / "ingest_report.json").read_text())


@FUZZ
@given(changes=st.lists(mutations, min_size=1, max_size=3))
def test_fuzzed_cohort_configs(probe, baseline: Path, changes: list) -> None:
    _check_ingest(probe, baseline, yaml.safe_dump(_mutated(VALID, changes), allow_unicode=True))


@settings(FUZZ, max_examples=50)
@given(cut=st.integers(0, 400), insert=st.binary(max_size=12))
def test_damaged_cohort_yaml_text(probe, baseline: Path, cut: int, insert: bytes) -> None:
    """The valid file's bytes with a random insertion: broken YAML, bad UTF-8, truncated mappings."""
    text = yaml.safe_dump(VALID).encode()
    _check_ingest(probe, baseline, text[:cut] + insert + text[cut:])
