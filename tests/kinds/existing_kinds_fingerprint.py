"""Fingerprint of what the three original kinds compute (features and predictions) on the session's demo cohort.

`python tests/kinds/existing_kinds_fingerprint.py OUT.json` writes the fingerprint of a fresh 300-patient demo
cohort (seed 11, the test session's), ingested and trained as tests/conftest.py does; the committed
`existing_kinds_golden.json` was written by the code before the kinds became plug-ins, and
test_existing_kinds_unchanged.py compares today's fingerprint with it.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

DECIMALS = 4  # predictions: float32 sums may differ in the last bits when code paths are reordered


def _digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()[:16]


def cache_fingerprint(cache_path: Path) -> dict[str, dict[str, str]]:
    """Per modality, a digest of every array, table and JSON file of the feature cache."""
    out: dict[str, dict[str, str]] = {}
    for folder in sorted((cache_path / "modalities").iterdir()):
        entries = {}
        for path in sorted(folder.iterdir()):
            if path.suffix == ".npy":
                entries[path.name] = _digest(np.load(path))
            elif path.suffix == ".parquet":
                entries[path.name] = _frame_digest(pd.read_parquet(path))
            elif path.suffix == ".json":
                entries[path.name] = hashlib.sha256(
                    json.dumps(json.loads(path.read_text()), sort_keys=True).encode()
                ).hexdigest()[:16]
        out[folder.name] = entries
    out["cohort"] = {"cohort.parquet": _frame_digest(pd.read_parquet(cache_path / "cohort.parquet"))}
    return out


def _frame_digest(frame: pd.DataFrame) -> str:
    """Digest of a table's values without its pseudonyms (the session's key is random), in a canonical row order
    where rows are ordered by pseudonym."""
    values = frame.drop(columns=["patient"], errors="ignore")
    if "patient" in frame and not frame["patient"].is_unique:  # a long table (events): rows sorted by pseudonym
        values = values.sort_values(list(values.columns), kind="stable", na_position="last")
    return hashlib.sha256(pd.util.hash_pandas_object(values, index=False).to_numpy().tobytes()).hexdigest()[:16]


def prediction_fingerprint(run: Path) -> dict[str, list[float]]:
    predictions = pd.read_parquet(run / "predictions.parquet")
    return {column: np.round(predictions[column].to_numpy(np.float64), DECIMALS).tolist()
            for column in ("fusion_logit", "xgboost_logit")}  # fmt: skip


def main(target: Path) -> None:
    from clinfuse.pipelines.training.train import TrainSettings, train
    from clinfuse.platform.demo import generate_demo_cohort
    from clinfuse.platform.ingest import ingest

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        generate_demo_cohort(root / "cohort", patients=300, seed=11)
        ingest(root / "cohort" / "cohort.yaml", root / "cache", workers=1)
        train(root / "cache", root / "run", TrainSettings(max_epochs=3, accelerator="cpu", seed=1, patience=3))
        fingerprint = {"cache": cache_fingerprint(root / "cache"), "predictions": prediction_fingerprint(root / "run")}
    target.write_text(json.dumps(fingerprint, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
