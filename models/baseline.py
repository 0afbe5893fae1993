"""HAIM-style XGBoost baseline on concatenated per-modality features; saved as XGBoost JSON, never pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xgboost as xgb


class XGBoostBaseline:
    """Gradient-boosted trees with early stopping on the validation split. Missing modalities are NaN."""

    def __init__(self, feature_names: list[str], seed: int = 0, n_jobs: int | None = None) -> None:
        self.feature_names = feature_names
        self.model = xgb.XGBClassifier(
            n_estimators=600, learning_rate=0.03, max_depth=3, subsample=0.8, colsample_bytree=0.3,
            min_child_weight=2.0, reg_lambda=2.0, eval_metric="auc", early_stopping_rounds=50,
            tree_method="hist", random_state=seed, n_jobs=n_jobs,
        )  # fmt: skip

    def fit(self, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> XGBoostBaseline:
        self.model.fit(x_train, y_train, eval_set=[(x_val, y_val)], verbose=False)
        return self

    def logit(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x, output_margin=True)

    def save(self, path: Path) -> None:
        self.model.get_booster().feature_names = self.feature_names
        self.model.save_model(path)

    @classmethod
    def load(cls, path: Path) -> XGBoostBaseline:
        baseline = cls.__new__(cls)
        baseline.model = xgb.XGBClassifier()
        baseline.model.load_model(path)
        baseline.feature_names = list(baseline.model.get_booster().feature_names or [])
        return baseline
