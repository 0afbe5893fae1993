"""Platt scaling of a logit (a * logit + b), fitted on the validation split by maximum likelihood.

With b fixed to 0 this is temperature scaling; the free intercept also corrects a shifted prior, which late
fusion under modality dropout tends to have.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize


@dataclass(frozen=True)
class PlattCalibrator:
    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray) -> PlattCalibrator:
        logits, labels = np.asarray(logits, float), np.asarray(labels, float)

        def nll(params: np.ndarray) -> float:
            z = params[0] * logits + params[1]
            return float(np.mean(np.logaddexp(0.0, z) - labels * z))

        result = minimize(nll, x0=np.array([1.0, 0.0]), method="L-BFGS-B", bounds=[(1e-3, 100.0), (-20.0, 20.0)])
        return cls(slope=float(result.x[0]), intercept=float(result.x[1]))

    def logit(self, logits: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(logits, float) + self.intercept

    def probability(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(logits)))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> PlattCalibrator:
        return cls(**data)
