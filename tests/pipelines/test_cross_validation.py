"""Cross-validated training on a real public cohort (NKI-70 breast cancer, shipped by the survset package)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clinfuse.models import metrics
from clinfuse.pipelines.evaluation.evaluate import evaluate
from clinfuse.pipelines.training.cross_validation import fold_splits
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.errors import ClinFuseError
from sklearn.linear_model import LogisticRegressionCV


def test_folds_cover_every_patient_once_per_repeat_with_disjoint_validation() -> None:
    labels = np.array([0] * 70 + [1] * 30)
    folds = fold_splits(labels, folds=5, repeats=2, seed=0)
    assert len(folds) == 10
    for repeat in (0, 1):
        tests = np.stack([splits == "test" for r, _, splits in folds if r == repeat])
        assert (tests.sum(axis=0) == 1).all()
    for _, _, splits in folds:
        assert 5 <= labels[splits == "test"].sum() <= 7  # stratified
        assert ((splits == "val") & (splits == "test")).sum() == 0 and (splits == "val").sum() > 0
    assert not np.array_equal(folds[0][2], folds[5][2])  # repeats reshuffle
    with pytest.raises(ClinFuseError, match="fewer folds"):
        fold_splits(np.array([0] * 20 + [1] * 3), folds=5, repeats=1, seed=0)


def test_small_real_cohort_is_cross_validated_and_matches_a_logistic_regression(
    nki_cache: Path, clinfuse_exe: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = subprocess.run([str(clinfuse_exe), "train", "--cache", str(nki_cache), "--out", str(run),
                             "--accelerator", "cpu"], capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "5-fold cross-validation" in result.stdout  # a small cohort says why it is cross-validated

    oof = pd.read_parquet(run / "cv" / "oof_predictions.parquet")
    cohort = FeatureCache(nki_cache).cohort
    assert sorted(oof["patient"]) == sorted(cohort["patient"])  # every patient once, by a model that never saw it
    info = json.loads((run / "run.json").read_text())
    assert info["cross_validation"]["folds"] == 5 and set(info["split_sizes"]) == {"train", "val"}  # the refit
    # every branch linear: no Lightning, the regression fitted on train + validation, calibrated out of fold
    assert info["gradient_training"] is False and info["linear_branches"]["fitted_on"] == ["train", "val"]
    assert "out-of-fold" in json.loads((run / "calibration.json").read_text())["fitted_on"]
    # only the deployable refit is ever explained: the folds carry no explanation background
    assert (run / "explain_background.safetensors").is_file()
    assert not list((run / "cv").glob("*/explain_background.safetensors"))
    fold = pd.read_parquet(run / "cv" / "repeat0_fold0" / "predictions.parquet")
    seen = fold["split"] != "test"
    assert not np.allclose(fold.loc[seen, "fusion_logit_heldout"], fold.loc[seen, "fusion_logit"])
    np.testing.assert_allclose(fold.loc[~seen, "fusion_logit_heldout"], fold.loc[~seen, "fusion_logit"])

    metrics_ = evaluate(run, resamples=200)
    assert metrics_["evaluated_on"] == "pooled out-of-fold predictions" and metrics_["n_test"] == len(cohort)
    assert len(metrics_["cross_validation"]["per_fold"]) == 5
    assert "Cross-validation (5 folds x 1 repeats)" in (run / "report.md").read_text()

    # the same folds, an L2 logistic regression on the concatenated tables (the baseline a data scientist writes)
    tables = [FeatureCache(nki_cache).table(m, "features").drop(columns=["patient"]).to_numpy() for m in
              ("genomics", "clinical")]  # fmt: skip
    x = np.hstack([t[cohort[f"row_{m}"].to_numpy()] for t, m in zip(tables, ("genomics", "clinical"), strict=True)])
    labels = cohort["label"].to_numpy()
    baseline = np.zeros(len(labels))
    for _, _, splits in fold_splits(labels, folds=5, repeats=1, seed=0):
        model = LogisticRegressionCV(
            Cs=13, l1_ratios=(0.0,), cv=5, scoring="neg_log_loss", max_iter=5000, use_legacy_attributes=False
        )
        baseline[splits == "test"] = model.fit(x[splits != "test"], labels[splits != "test"]).decision_function(
            x[splits == "test"])  # fmt: skip
    by_patient = oof.set_index("patient").loc[cohort["patient"], "fusion_logit"].to_numpy()
    fusion_auroc, baseline_auroc = metrics.auroc(labels, by_patient), metrics.auroc(labels, baseline)
    assert fusion_auroc >= baseline_auroc - 0.02, (fusion_auroc, baseline_auroc)


@pytest.mark.parametrize("options", [["--cv", "3", "--split"], ["--cv", "50"], ["--table-encoder", "forest"]])
def test_bad_training_options_are_one_clear_error_before_anything_is_trained(
    options: list[str], nki_cache: Path, clinfuse_exe: Path, tmp_path: Path
) -> None:
    result = subprocess.run([str(clinfuse_exe), "train", "--cache", str(nki_cache), "--out", str(tmp_path / "r"),
                             *options], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists() and "cross-validation (x" not in result.stdout
