"""Score every row of a (small) scoring cache in this process with the batch scorer: the online path's scorer,
so a served answer and a `clinfuse score` row of the same patient come from the same code."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from clinfuse.pipelines.scoring.chunk import ChunkTask, cohort_inputs, score_task, scoring_model
from clinfuse.platform.cache import FeatureCache


def warm_up(bundle: Path, manifest_sha256: str) -> None:
    """Load (verified) weights, calibrators and the XGBoost baseline now, not on the first request."""
    scoring_model(str(bundle), manifest_sha256)


def score_in_process(bundle: Path, manifest_sha256: str, cache: FeatureCache, name: str, version: int,
                     explain: bool = True) -> pd.DataFrame:  # fmt: skip
    """One row per patient of `cache`, in cohort order, with `clinfuse score`'s columns."""
    task = ChunkTask(str(bundle), manifest_sha256, str(cache.path.resolve()), tuple(range(len(cache.cohort))),
                     explain, name, version, pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"))  # fmt: skip
    scoring = scoring_model(str(bundle), manifest_sha256)
    # the request's cache is opened for this request only: a long-running server must not keep every one
    return score_task(task, scoring, cohort_inputs(task.cache, scoring.model.embed_dim))
