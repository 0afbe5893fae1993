"""What dicom, table and ehr compute changes only on purpose: the session's demo cache and run (seed 11, 300
patients, the fixtures' training settings) match the fingerprint in existing_kinds_golden.json (written by
existing_kinds_fingerprint.py). It was first written before the kinds became plug-ins, which changed nothing; it
was rewritten once since, when DICOM windowing followed the standard and the demo's radiographs gained VOI LUTs,
SIGMOID windows and burned-in priors: only the imaging files and the predictions changed then."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def _fingerprint_module():
    spec = importlib.util.spec_from_file_location("existing_kinds_fingerprint", HERE / "existing_kinds_fingerprint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_features_of_the_existing_kinds_are_unchanged(demo_cache: Path) -> None:
    golden = json.loads((HERE / "existing_kinds_golden.json").read_text())["cache"]
    assert _fingerprint_module().cache_fingerprint(demo_cache) == golden


def test_predictions_of_the_existing_kinds_are_unchanged(demo_run: Path) -> None:
    golden = json.loads((HERE / "existing_kinds_golden.json").read_text())["predictions"]
    today = _fingerprint_module().prediction_fingerprint(demo_run)
    for column, values in golden.items():
        np.testing.assert_allclose(today[column], values, atol=2e-4, err_msg=column)
