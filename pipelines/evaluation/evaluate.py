"""`clinfuse evaluate RUN`: honest test-split metrics with bootstrap CIs, per modality, missingness, subgroup.

Single-modality figures use the same fusion model with the other modalities masked, on every test patient
(a patient without that modality gets the prior), so they compare like for like with the fusion figure; the
AUROC on the patients who have the modality is reported beside it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from clinfuse.models import decision_metrics, metrics
from clinfuse.pipelines.evaluation import clinical_figures, plots
from clinfuse.pipelines.evaluation.cross_validated import (
    fold_summary,
    is_cross_validated,
    pooled_predictions,
    report_section,
)
from clinfuse.pipelines.registry.model_folder import EVALUATION_FILES, open_model, seal_run
from clinfuse.pipelines.training import run_files, tracking
from clinfuse.platform.errors import ClinFuseError

RESAMPLES = 1000
TARGETS = {"fusion_minus_best_single": 0.03, "fusion_minus_xgboost": -0.01, "fusion_ece_max": 0.05}


def evaluate(
    run: Path,
    resamples: int = RESAMPLES,
    seed: int = 0,
    thresholds: Sequence[float] = clinical_figures.DEFAULT_THRESHOLDS,
    target_sensitivities: Sequence[float] = clinical_figures.DEFAULT_TARGET_SENSITIVITIES,
) -> dict:
    """Compute and write metrics.json, report.md, calibration.png, roc_pr.png and decision_curve.png into the run
    folder (then resealed); `thresholds` and `target_sensitivities` set the report's operating points.

    The run is verified first (an earlier evaluation's results aside: they are rewritten). The results are
    written into a hidden staging folder, moved in by rename and listed in the run's manifest last, so a killed
    evaluation leaves results that the next consumer refuses, never ones that look valid. The test metrics and
    these files are then logged to the run's MLflow run (a warning, not an error, when that cannot be done)."""
    if open_model(run, skip=EVALUATION_FILES).kind != "run":
        raise ClinFuseError(f"{run} is a registered bundle, not a training run", "evaluate the run it was built from")
    cross_validated = is_cross_validated(run)
    predictions = pooled_predictions(run) if cross_validated else pd.read_parquet(run / run_files.PREDICTIONS)
    predictions = _heldout_validation(predictions)
    info = json.loads((run / run_files.RUN_INFO).read_text())
    modalities = list(info["modalities"])
    test = predictions[predictions["split"] == "test"].reset_index(drop=True)
    if test.empty:
        raise ClinFuseError(f"{run} has no test patients to evaluate (a cross-validation that did not finish?)",
                            "rerun `clinfuse train` into this folder")  # fmt: skip
    labels = test["label"].to_numpy()
    figures = clinical_figures.clinical_figures(predictions, resamples, seed, thresholds, target_sensitivities)
    fusion_prob = test["fusion_prob"].to_numpy()

    result = {
        "fusion": _summary(labels, test["fusion_logit"], test["fusion_prob"], test["fusion_prob_raw"], resamples, seed),
        "xgboost": _summary(labels, test["xgboost_logit"], test["xgboost_prob"], test["xgboost_prob_raw"], resamples,
                            seed),
        "single_modality": {},
        "by_missingness": {},
        "subgroups": {},
        "n_test": len(test),
        "prevalence": float(labels.mean()),
        "bootstrap_resamples": resamples,
        "calibration": _calibration_text(run),
    }  # fmt: skip
    for name in modalities:
        scores = test[f"single_logit_{name}"].to_numpy()
        has = test[f"present_{name}"].to_numpy()
        result["single_modality"][name] = {
            "auroc": metrics.auroc(labels, scores),
            "auroc_ci": metrics.bootstrap_ci(labels, scores, metrics.auroc, resamples, seed),
            "n_present": int(has.sum()),
            "auroc_present_only": metrics.auroc(labels[has], scores[has]),
        }
    patterns = test[[f"present_{n}" for n in modalities]].apply(
        lambda row: "+".join(n for n in modalities if row[f"present_{n}"]) or "none", axis=1
    )
    for pattern in sorted(patterns.unique()):
        rows = (patterns == pattern).to_numpy()
        result["by_missingness"][pattern] = _group(labels[rows], test["fusion_logit"].to_numpy()[rows])
        result["by_missingness"][pattern] |= decision_metrics.group_calibration(labels[rows], fusion_prob[rows])
    for column, groups in _subgroups(test).items():
        for label, rows in groups.items():
            result["subgroups"][f"{column}={label}"] = _group(labels[rows], test["fusion_logit"].to_numpy()[rows])
            calibration = decision_metrics.group_calibration(labels[rows], fusion_prob[rows])
            result["subgroups"][f"{column}={label}"] |= calibration
    result["targets"] = _targets(result)
    result["evaluated_on"] = "pooled out-of-fold predictions" if cross_validated else "test split"
    if cross_validated:
        result["cross_validation"] = fold_summary(run)
        result["calibration"] += " of each fold"
    for model in clinical_figures.PROBABILITY_COLUMNS:
        result[model] |= figures.pop(model)
    result |= figures
    cv_section = report_section(result["cross_validation"]) if cross_validated else ""
    with tempfile.TemporaryDirectory(prefix=".evaluate-", dir=run) as scratch:
        staged = Path(scratch)
        (staged / run_files.METRICS).write_text(json.dumps(result, indent=1))
        _calibration_plot(test, staged / run_files.CALIBRATION_PLOT)
        plots.roc_pr_plot(labels, {m: test[c].to_numpy() for m, c in clinical_figures.PROBABILITY_COLUMNS.items()},
                          staged / run_files.ROC_PR_PLOT)  # fmt: skip
        plots.decision_curve_plot(result["decision_curve"], staged / run_files.DECISION_CURVE_PLOT)
        (staged / run_files.REPORT).write_text(_report(result, info) + cv_section
                                               + clinical_figures.report_section(result))  # fmt: skip
        for name in EVALUATION_FILES:
            (staged / name).replace(run / name)
    seal_run(run)
    tracking.log_evaluation(run, info, result)
    return result


def _calibration_text(run: Path) -> str:
    fitted_on = json.loads((run / run_files.CALIBRATION).read_text()).get("fitted_on", "val")
    if fitted_on == "val":
        return "Platt scaling fitted on the validation split"
    return "Platt scaling fitted on the inner out-of-fold logits of the training and validation patients"


def _heldout_validation(predictions: pd.DataFrame) -> pd.DataFrame:
    """Validation rows scored as held out: a linear fit that also used them gives their inner out-of-fold risk,
    so thresholds chosen on validation are not chosen on fitted predictions."""
    if "fusion_prob_heldout" not in predictions:
        return predictions
    predictions = predictions.copy()
    val = predictions["split"] == "val"
    predictions.loc[val, "fusion_prob"] = predictions.loc[val, "fusion_prob_heldout"]
    return predictions


def _summary(labels, logits, probabilities, raw_probabilities, resamples: int, seed: int) -> dict:
    logits, probabilities = np.asarray(logits), np.asarray(probabilities)
    return {
        "auroc": metrics.auroc(labels, logits),
        "auroc_ci": metrics.bootstrap_ci(labels, logits, metrics.auroc, resamples, seed),
        "auprc": metrics.auprc(labels, logits),
        "auprc_ci": metrics.bootstrap_ci(labels, logits, metrics.auprc, resamples, seed),
        "brier": metrics.brier(labels, probabilities),
        "ece": metrics.expected_calibration_error(labels, probabilities),
        "ece_uncalibrated": metrics.expected_calibration_error(labels, np.asarray(raw_probabilities)),
        "ece_if_perfectly_calibrated": metrics.ece_if_perfectly_calibrated(labels, probabilities, resamples, seed),
    }


def _group(labels: np.ndarray, scores: np.ndarray) -> dict:
    return {"n": int(len(labels)), "positives": int(labels.sum()), "auroc": metrics.auroc(labels, scores)}


def _subgroups(test: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    groups: dict[str, dict[str, np.ndarray]] = {}
    if "sex" in test:
        groups["sex"] = {str(v): (test["sex"] == v).to_numpy() for v in sorted(test["sex"].dropna().unique())}
    if "age" in test:
        bands = pd.cut(test["age"], [0, 50, 70, 200], right=False, labels=["<50", "50-69", ">=70"])
        groups["age"] = {str(v): (bands == v).to_numpy() for v in bands.cat.categories}
    return groups


def _targets(result: dict) -> dict:
    fusion = result["fusion"]["auroc"] or 0.0
    best_single_name, best_single = max(
        ((n, s["auroc"] or 0.0) for n, s in result["single_modality"].items()), key=lambda item: item[1]
    )
    xgb = result["xgboost"]["auroc"] or 0.0
    return {
        "fusion_minus_best_single": {"value": round(fusion - best_single, 4), "best_single": best_single_name,
                                     "goal": f">= {TARGETS['fusion_minus_best_single']}",
                                     "met": fusion - best_single >= TARGETS["fusion_minus_best_single"]},
        "fusion_minus_xgboost": {"value": round(fusion - xgb, 4), "goal": f">= {TARGETS['fusion_minus_xgboost']}",
                                 "met": fusion - xgb >= TARGETS["fusion_minus_xgboost"]},
        "fusion_ece": {"value": round(result["fusion"]["ece"], 4), "goal": f"<= {TARGETS['fusion_ece_max']}",
                       "met": result["fusion"]["ece"] <= TARGETS["fusion_ece_max"]},
        "fusion_ece_consistent_with_calibration": {
            "value": round(result["fusion"]["ece_if_perfectly_calibrated"]["p_value"], 4),
            "goal": "p >= 0.05 (observed ECE within the noise of a perfectly calibrated model at this test size)",
            "met": result["fusion"]["ece_if_perfectly_calibrated"]["p_value"] >= 0.05},
    }  # fmt: skip


def _calibration_plot(test: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = test["label"].to_numpy()
    figure, axis = plt.subplots(figsize=(5, 5), dpi=110)
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for column, name in [("fusion_prob_raw", "fusion, raw"), ("fusion_prob", "fusion, calibrated"),
                         ("xgboost_prob", "XGBoost, calibrated")]:  # fmt: skip
        predicted, observed, counts = metrics.reliability_curve(labels, test[column].to_numpy())
        axis.plot(predicted, observed, marker="o", label=name)
    axis.set_xlabel("predicted risk")
    axis.set_ylabel("observed event rate")
    axis.set_title(f"Calibration on the test split (n={len(test)})")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(interval: list[float] | None) -> str:
    return "n/a" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def _report(result: dict, info: dict) -> str:
    lines = [
        f"# Evaluation of run on cohort '{info.get('cohort_name')}'",
        "",
        f"{result['evaluated_on'].capitalize()}: {result['n_test']} patients, prevalence {result['prevalence']:.3f}. "
        f"95% CIs: percentile bootstrap, {result['bootstrap_resamples']} resamples. "
        f"{result['calibration']}.",
        "",
        "| model | AUROC | 95% CI | AUPRC | Brier | ECE | ECE before calibration |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model in ("fusion", "xgboost"):
        r = result[model]
        lines.append(f"| {model} | {_fmt(r['auroc'])} | {_ci(r['auroc_ci'])} | {_fmt(r['auprc'])} | "
                     f"{_fmt(r['brier'])} | {_fmt(r['ece'])} | {_fmt(r['ece_uncalibrated'])} |")  # fmt: skip
    lines += ["", "## Single modality (same fusion model, other modalities masked)", "",
              "| modality | AUROC (all test) | 95% CI | n with modality | AUROC (with modality) |",
              "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, r in result["single_modality"].items():
        lines.append(f"| {name} | {_fmt(r['auroc'])} | {_ci(r['auroc_ci'])} | {r['n_present']} | "
                     f"{_fmt(r['auroc_present_only'])} |")  # fmt: skip
    for title, key in (("By missingness pattern", "by_missingness"), ("Subgroups", "subgroups")):
        lines += ["", f"## {title} (fusion)", "", "| group | n | positives | AUROC |", "| --- | --- | --- | --- |"]
        for group, r in result[key].items():
            lines.append(f"| {group} | {r['n']} | {r['positives']} | {_fmt(r['auroc'])} |")
    lines += ["", "## Targets", "", "| target | value | goal | met |", "| --- | --- | --- | --- |"]
    for name, t in result["targets"].items():
        lines.append(f"| {name} | {t['value']} | {t['goal']} | {'yes' if t['met'] else 'NO'} |")
    fusion = result["fusion"]
    lines += ["", metrics.describe_ece_noise(fusion["ece"], fusion["ece_if_perfectly_calibrated"], result["n_test"])]
    lines += ["", "![calibration](calibration.png)", ""]
    return "\n".join(lines)
