"""Lightning's MLflow logger writing a fit's epoch metrics into a training's MLflow run (tracking.py).

A module of its own so that tracking.py, which evaluation and table-only trainings import, does not import Lightning.
"""

from __future__ import annotations

from pytorch_lightning.loggers import MLFlowLogger


class RunEpochLogger(MLFlowLogger):
    """Logs into an existing run, whose status `tracking.training_run` sets: a fit is one part of the run (the
    model, or one cross-validation fold), so its end must not end the run."""

    def finalize(self, status: str = "success") -> None:
        """Leave the run's status to `training_run` (Lightning's would mark it FINISHED after every fit)."""
