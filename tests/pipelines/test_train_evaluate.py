"""Train on the demo cache (CPU, two epochs), then evaluate: artifacts, formats and report keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from clinfuse.models.baseline import XGBoostBaseline
from clinfuse.pipelines.evaluation.clinical_figures import DEFAULT_THRESHOLDS, clinical_figures, parse_fractions
from clinfuse.pipelines.evaluation.evaluate import evaluate
from clinfuse.pipelines.training import run_files
from clinfuse.pipelines.training.model_io import load_model
from clinfuse.pipelines.training.predict import predict_cohort
from clinfuse.pipelines.training.train import TrainSettings, train
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.errors import ClinFuseError
from safetensors.torch import load_file


def test_run_holds_safetensors_weights_calibration_baseline_and_predictions(demo_run: Path, demo_cache: Path) -> None:
    for name in (run_files.MODEL_WEIGHTS, run_files.MODEL_SPEC, run_files.CALIBRATION, run_files.XGBOOST_MODEL,
                 run_files.PREDICTIONS, run_files.RUN_INFO):  # fmt: skip
        assert (demo_run / name).is_file(), name
    assert load_file(demo_run / run_files.MODEL_WEIGHTS)  # plain tensors, no pickle
    predictions = pd.read_parquet(demo_run / run_files.PREDICTIONS)
    cohort = FeatureCache(demo_cache).cohort
    assert list(predictions["patient"]) == list(cohort["patient"])
    for column in ("fusion_prob", "fusion_prob_raw", "xgboost_prob", "xgboost_prob_raw"):
        assert predictions[column].between(0, 1).all()
    assert not np.allclose(predictions["fusion_prob"], predictions["fusion_prob_raw"])
    assert json.loads((demo_run / run_files.XGBOOST_MODEL).read_text())["learner"]  # XGBoost's JSON format


def test_modality_weights_are_fitted_on_validation_and_saved_with_the_model(demo_run: Path) -> None:
    info = json.loads((demo_run / run_files.RUN_INFO).read_text())
    fitted = info["modality_weights"]
    assert list(fitted) == list(info["modalities"])
    assert all(w >= 0 for w in fitted.values()) and any(abs(w - 1.0) > 1e-3 for w in fitted.values())
    saved = load_file(demo_run / run_files.MODEL_WEIGHTS)["head.modality_weight"]
    assert np.allclose(saved.numpy(), list(fitted.values()), atol=1e-4)
    assert set(info["branches"]) == set(fitted)  # each branch's early-stopping record


def test_logit_centres_are_training_means_and_small_tables_get_linear_branch(demo_run: Path, demo_cache: Path) -> None:
    info = json.loads((demo_run / run_files.RUN_INFO).read_text())
    model = load_model(demo_run)
    outputs = predict_cohort(model, FeatureCache(demo_cache), split="train")
    for column, name in enumerate(model.modalities):
        present = outputs["present"][:, column] > 0
        mean = outputs["modality_logits"][present, column].mean()
        assert info["logit_centers"][name] == pytest.approx(mean, abs=1e-3)
        assert float(model.head.logit_center[column]) == pytest.approx(mean, abs=1e-3)
    # about 210 training patients: the genomics branch is the L2 logistic regression (models/branch_selection.py),
    # fitted outside Lightning, so it is not screened and its coefficients are those of the joint fit
    assert info["architectures"]["genomics"] == "linear" and "genomics" not in info["input_screening"]
    assert info["linear_branches"]["modalities"] == ["genomics"]
    assert model.branches["genomics"].encoder.coefficient.abs().sum() > 0


def test_saved_model_reproduces_the_predictions(demo_run: Path, demo_cache: Path) -> None:
    model = load_model(demo_run)
    outputs = predict_cohort(model, FeatureCache(demo_cache))
    stored = pd.read_parquet(demo_run / run_files.PREDICTIONS)
    np.testing.assert_allclose(outputs["fusion_logit"], stored["fusion_logit"], rtol=1e-4, atol=1e-4)
    baseline = XGBoostBaseline.load(demo_run / run_files.XGBOOST_MODEL)
    assert baseline.feature_names and all(":" in name for name in baseline.feature_names)


def test_single_modality_logits_use_only_that_modality(demo_run: Path) -> None:
    predictions = pd.read_parquet(demo_run / run_files.PREDICTIONS)
    absent = ~predictions["present_imaging"]
    prior_values = predictions.loc[absent, "single_logit_imaging"].round(5).unique()
    assert len(prior_values) == 1, "without the modality, the single-modality prediction is the prior"


def test_evaluate_writes_the_documented_metrics(demo_run: Path) -> None:
    result = evaluate(demo_run, resamples=200)
    for model in ("fusion", "xgboost"):
        assert set(result[model]) >= {"auroc", "auroc_ci", "auprc", "brier", "ece"}
        low, high = result[model]["auroc_ci"]
        assert low <= result[model]["auroc"] <= high
    assert set(result["single_modality"]) == {"imaging", "genomics", "ehr"}
    assert sum(g["n"] for g in result["by_missingness"].values()) == result["n_test"]
    assert {"sex=F", "sex=M"} <= set(result["subgroups"])
    assert 0 < result["prevalence"] < 1
    assert json.loads((demo_run / run_files.METRICS).read_text()) == json.loads(json.dumps(result))
    assert (demo_run / run_files.CALIBRATION_PLOT).read_bytes()[:4] == b"\x89PNG"
    assert "| fusion |" in (demo_run / run_files.REPORT).read_text()


def test_evaluate_writes_the_clinical_decision_figures(demo_run: Path) -> None:
    if not (demo_run / run_files.METRICS).is_file():
        evaluate(demo_run, resamples=200)
    result = json.loads((demo_run / run_files.METRICS).read_text())
    for model in ("fusion", "xgboost"):
        assert set(result[model]) >= {"calibration_intercept", "calibration_intercept_ci", "calibration_slope",
                                      "calibration_slope_ci", "operating_points"}  # fmt: skip
        points = result[model]["operating_points"]
        assert [p["rule"] for p in points] == ["risk >= 0.1", "risk >= 0.2", "risk >= 0.3", "risk >= 0.5",
                                               "target sensitivity 0.8", "target sensitivity 0.9"]  # fmt: skip
        for point in points:
            assert set(point) >= {"threshold", "sensitivity_ci", "specificity_ci", "ppv", "npv", "alerts_per_100_ci"}
            if point["kind"] == "target_sensitivity":
                assert point["sensitivity_where_chosen"] >= point["target_sensitivity"]
    assert result["operating_thresholds_from"] == "validation"
    curve = result["decision_curve"]
    assert (curve["thresholds"][0], curve["thresholds"][-1], len(curve["thresholds"])) == (0.01, 0.5, 50)
    assert set(curve["net_benefit"]) == {"fusion", "xgboost", "treat_all", "treat_none"}
    for group in [*result["by_missingness"].values(), *result["subgroups"].values()]:
        assert {"observed_risk", "mean_predicted_risk", "calibration_intercept", "calibration_slope"} <= set(group)
    for name in (run_files.DECISION_CURVE_PLOT, run_files.ROC_PR_PLOT):
        assert (demo_run / name).read_bytes()[:4] == b"\x89PNG", name
    report = (demo_run / run_files.REPORT).read_text()
    assert "## Clinical decision figures" in report and "found on the validation split" in report
    predictions = pd.read_parquet(demo_run / run_files.PREDICTIONS, columns=["patient"])
    assert not any(patient in report for patient in predictions["patient"]), "no patient ids in the report"


def test_model_card_carries_the_operating_points_and_calibration_slope(demo_run: Path, demo_cache: Path) -> None:
    from clinfuse.pipelines.registry.model_card import render_model_card

    if not (demo_run / run_files.METRICS).is_file():
        evaluate(demo_run, resamples=200)
    metrics = json.loads((demo_run / run_files.METRICS).read_text())
    provenance = {"cohort_config_hash": "h", "git_commit": "c", "trained_at": "t", "versions": {}}
    ingest_report = json.loads((demo_cache / "ingest_report.json").read_text())
    card = render_model_card(metrics, provenance, {"imaging": {"kind": "dicom"}}, ingest_report)
    slope = metrics["fusion"]["calibration_slope"]
    assert "Calibration intercept" in card and (slope is None or f"calibration slope {slope:.3f}" in card)
    assert "## Operating points (late fusion, test split)" in card and "| target sensitivity 0.9 |" in card
    assert card.count("| risk >= ") == len(DEFAULT_THRESHOLDS)


def test_operating_thresholds_fall_back_to_test_without_a_validation_split(demo_run: Path) -> None:
    predictions = pd.read_parquet(demo_run / run_files.PREDICTIONS)
    figures = clinical_figures(predictions[predictions["split"] != "val"], resamples=100, seed=0,
                               thresholds=(0.25,), target_sensitivities=(0.7,))  # fmt: skip
    assert figures["operating_thresholds_from"] == "test"
    assert [p["rule"] for p in figures["fusion"]["operating_points"]] == ["risk >= 0.25", "target sensitivity 0.7"]
    target = figures["fusion"]["operating_points"][1]
    assert target["sensitivity"] == target["sensitivity_where_chosen"] >= 0.7, "chosen on test: met on test"


def test_evaluate_rejects_bad_operating_point_options(clinfuse_exe: Path, tmp_path: Path) -> None:
    # -X importtime lists what the command imported (evaluation itself, before the options are checked): never
    # torch, Lightning or MLflow, which take seconds each and which evaluation needs only to log its metrics
    result = subprocess.run([sys.executable, "-X", "importtime", str(clinfuse_exe), "evaluate", str(tmp_path),
                             "--thresholds", "10,20"], capture_output=True, text=True, timeout=300)  # fmt: skip
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    errors = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert result.returncode == 2 and len(errors) == 1
    assert errors[0].startswith("error: --thresholds 10, 20 must be strictly between 0 and 1 (give fractions")
    assert "clinfuse.pipelines.evaluation.evaluate" in imported
    assert not imported & {"torch", "pytorch_lightning", "mlflow"}
    with pytest.raises(ClinFuseError, match="'0.8;0.9' is not a comma-separated list"):
        parse_fractions("0.8;0.9", "--target-sensitivity")
    with pytest.raises(ClinFuseError, match="nan must be strictly between"):
        parse_fractions("0.5,nan", "--target-sensitivity")
    assert parse_fractions(" 0.3, 0.1,0.3", "--thresholds") == (0.1, 0.3)


def test_cli_errors_for_missing_cache_and_run(clinfuse_exe: Path, tmp_path: Path) -> None:
    for args in (["train", "--cache", str(tmp_path / "nope"), "--out", str(tmp_path / "r")],
                 ["evaluate", str(tmp_path)]):  # fmt: skip
        result = subprocess.run([str(clinfuse_exe), *args], capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.startswith("error: ")


def test_gpu_request_without_gpu_is_a_clear_error(demo_cache: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: this checks the no-GPU message")
    from clinfuse.platform.errors import ClinFuseError

    with pytest.raises(ClinFuseError, match="no CUDA device"):
        train(demo_cache, tmp_path / "r", TrainSettings(accelerator="gpu"))
