"""The XGBoost baseline's exact TreeSHAP values (XGBoost's own `pred_contribs`), summed per modality."""

from __future__ import annotations

import numpy as np
import xgboost as xgb
from clinfuse.models.baseline import XGBoostBaseline
from clinfuse.models.calibration import PlattCalibrator


def xgboost_modality_values(baseline: XGBoostBaseline, features: np.ndarray, calibrator: PlattCalibrator) -> dict:
    """Per-modality TreeSHAP on the calibrated logit for one patient (features: (F,), NaN where absent).

    Feature names are '<modality>:<feature>'; an absent modality's features are all missing, and its value is
    what the trees make of that missingness (reported, and flagged absent by the caller).
    """
    matrix = xgb.DMatrix(features.reshape(1, -1), feature_names=baseline.feature_names)
    booster = baseline.model.get_booster()
    # the trees the model predicts with: up to the early-stopping best iteration, as XGBClassifier.predict does
    best = booster.attr("best_iteration")
    trees = (0, int(best) + 1) if best is not None else (0, 0)
    contributions = booster.predict(matrix, pred_contribs=True, iteration_range=trees)[0]
    per_modality: dict[str, float] = {}
    for name, value in zip(baseline.feature_names, contributions[:-1], strict=True):
        modality = name.split(":", 1)[0]
        per_modality[modality] = per_modality.get(modality, 0.0) + float(value) * calibrator.slope
    base = float(contributions[-1]) * calibrator.slope + calibrator.intercept
    prediction = base + sum(per_modality.values())
    return {"logit_values": per_modality, "logit_base": base, "logit_prediction": prediction,
            "probability": float(1.0 / (1.0 + np.exp(-prediction)))}  # fmt: skip
