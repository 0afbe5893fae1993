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

        def nll_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
            z = params[0] * logits + params[1]
            residual = 1.0 / (1.0 + np.exp(-z)) - labels
            loss = float(np.mean(np.logaddexp(0.0, z) - labels * z))
            return loss, np.array([np.mean(residual * logits), np.mean(residual)])

        # the analytic gradient: finite differences made the bootstrap interval's 200 refits dominate a fold
        result = minimize(nll_and_gradient, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                          bounds=[(1e-3, 100.0), (-20.0, 20.0)])  # fmt: skip
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


@dataclass(frozen=True)
class BootstrapInterval:
    """A 95% interval for a calibrated risk from Platt calibrators refitted on bootstrap resamples of the
    validation split. It covers the uncertainty of the logit-to-risk mapping given a finite validation set,
    not that of the encoders' weights (those would need retraining per resample)."""

    calibrators: tuple[PlattCalibrator, ...]
    level: float = 0.95

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray, resamples: int = 200, seed: int = 0) -> BootstrapInterval:
        logits, labels = np.asarray(logits, float), np.asarray(labels, float)
        rng = np.random.default_rng(seed)
        calibrators = []
        while len(calibrators) < resamples:
            sample = rng.integers(0, len(logits), len(logits))
            if labels[sample].min() == labels[sample].max():
                continue  # a resample with one label cannot be calibrated on
            calibrators.append(PlattCalibrator.fit(logits[sample], labels[sample]))
        return cls(tuple(calibrators))

    def bounds(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper risk for each logit."""
        risks = np.stack([c.probability(logits) for c in self.calibrators])
        tail = (1.0 - self.level) / 2 * 100
        return np.percentile(risks, tail, axis=0), np.percentile(risks, 100 - tail, axis=0)

    def to_json(self) -> dict:
        return {"level": self.level, "calibrators": [c.to_json() for c in self.calibrators]}

    @classmethod
    def from_json(cls, data: dict) -> BootstrapInterval:
        return cls(tuple(PlattCalibrator.from_json(c) for c in data["calibrators"]), data["level"])
