"""The MLflow pyfunc model of a ClinFuse bundle: what `mlflow.pyfunc.load_model`, `mlflow models serve` and
`mlflow.pyfunc.spark_udf` run.

`load_context` verifies the bundle (every file against its sha256 manifest, and the manifest against the digest
recorded when it was registered) before anything is loaded, so a tampered bundle is refused with the registry's
fix. `predict` writes the request as a scoring site, runs the frozen ingest and scores the rows with the batch
scorer in this process: the answer has exactly the columns and values of `clinfuse score --explain`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from clinfuse.platform.errors import ClinFuseError

BUNDLE_ARTIFACT = "bundle"
MANIFEST_KEY = "manifest_sha256"
NAME_KEY, VERSION_KEY = "model_name", "model_version"


class ClinFusePyfuncModel(mlflow.pyfunc.PythonModel):
    """A registered ClinFuse model behind MLflow's standard model interface."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from clinfuse.pipelines.scoring.online import warm_up

        config = context.model_config or {}
        self.bundle = Path(context.artifacts[BUNDLE_ARTIFACT])
        self.manifest_sha256 = config[MANIFEST_KEY]
        self.name, self.version = str(config.get(NAME_KEY, "")), int(config.get(VERSION_KEY, 0))
        warm_up(self.bundle, self.manifest_sha256)  # verifies the bundle (open_model) before loading any of it

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One answer row per request row. A row the model cannot score (no usable modality, a malformed cell) gets
        an error row, as in batch scoring, never an exception: MLflow's server would answer an exception with the
        whole request echoed back or a stack trace."""
        from clinfuse.pipelines.serving.request import model_modalities
        from clinfuse.platform.ingest.runner import NoPatientData

        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        try:
            return self._score(model_input)
        except NoPatientData as exc:
            sent = [c for c in model_modalities(self.bundle) if c in model_input and model_input[c].notna().any()]
            why = exc.problem if sent else "none of the model's modalities has data for this patient"  # batch's words
            return self._error_rows(model_input, f"no usable modality ({why})")
        except ClinFuseError as exc:
            if len(model_input) == 1:
                return self._error_rows(model_input, f"request: {exc}")
            return pd.concat([self.predict(context, model_input.iloc[[i]]) for i in range(len(model_input))],
                             ignore_index=True)  # fmt: skip

    def _score(self, request: pd.DataFrame) -> pd.DataFrame:
        from clinfuse.pipelines.scoring.frozen_ingest import ingest_for_scoring
        from clinfuse.pipelines.scoring.online import score_in_process
        from clinfuse.pipelines.serving.request import write_request_site

        with tempfile.TemporaryDirectory(prefix="clinfuse-online-") as scratch:
            site = Path(scratch) / "site"
            site.mkdir()
            config = write_request_site(request, self.bundle, site)
            with _quiet():
                cache = ingest_for_scoring(config, self.bundle, Path(scratch) / "cache", workers=None, progress=False)
            return score_in_process(self.bundle, self.manifest_sha256, cache, self.name, self.version)

    def _error_rows(self, request: pd.DataFrame, error: str) -> pd.DataFrame:
        """`clinfuse score`'s row for patients it cannot score: pseudonymised id, no risk, the reason."""
        from clinfuse.pipelines.serving.mlflow_model import answer_columns
        from clinfuse.pipelines.serving.request import model_modalities
        from clinfuse.platform.security import Pseudonymiser, load_pseudonym_key

        pseudonymise = Pseudonymiser(load_pseudonym_key())
        ids = request["patient_id"] if "patient_id" in request else pd.Series([None] * len(request))
        columns = answer_columns(list(model_modalities(self.bundle)))
        frame = pd.DataFrame({c: pd.Series([float("nan")] * len(request)) for c, t in columns.items() if t == "double"})
        frame["patient_id"] = [pseudonymise(str(p).strip()) if pd.notna(p) else "" for p in ids]
        frame["modalities_present"] = ""
        frame["model_name"], frame["model_version"] = self.name, self.version
        frame["scored_at"] = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
        frame["warnings"], frame["error"] = "", error
        return frame[list(columns)]


class _quiet:
    """The ingest's per-modality log lines are for batch operators; a scoring endpoint logs its own requests."""

    def __enter__(self) -> None:
        self.level = logging.root.manager.disable
        logging.disable(logging.INFO)

    def __exit__(self, *exc: object) -> None:
        logging.disable(self.level)
