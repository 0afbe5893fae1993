"""`clinfuse explain`: load a run and its feature cache, explain one patient, store its heatmaps (images, waveforms)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from clinfuse.models.baseline import XGBoostBaseline
from clinfuse.models.calibration import PlattCalibrator
from clinfuse.models.explain.patient import PatientExplanation, explain_patient
from clinfuse.models.explain.tree_shap import xgboost_modality_values
from clinfuse.pipelines.data import CacheDataset
from clinfuse.pipelines.registry.model_folder import open_model
from clinfuse.pipelines.training import run_files
from clinfuse.pipelines.training.baseline_features import BaselineFeatures
from clinfuse.pipelines.training.explain_background import load_backgrounds
from clinfuse.pipelines.training.model_io import load_model
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds import get_kind
from torch.utils.data import default_collate


class RunExplainer:
    """Everything needed to explain patients of one model, loaded once.

    `run` is a training run folder or a registered model bundle (the same file names), verified before anything
    is loaded (`manifest_sha256` pins a bundle to its registration); `cache` is the feature cache holding the
    patients (default: the run's training cache). Heatmaps are stored under `heatmap_dir` when asked for; by
    default RUN/explanations for a run, nowhere for a bundle (a sealed bundle is never written to: it would fail
    its next verification).
    """

    def __init__(self, run: Path, cache: Path | None = None, top_k: int = 20, heatmap_dir: Path | None = None,
                 manifest_sha256: str | None = None) -> None:  # fmt: skip
        verified = open_model(run, manifest_sha256)
        if cache is None:
            if not (run / run_files.RUN_INFO).is_file():
                raise ClinFuseError(f"{run} names no feature cache", "pass the cache of the patients to explain")
            cache = Path(json.loads((run / run_files.RUN_INFO).read_text())["cache"])
        self.run = run
        self.heatmap_dir = heatmap_dir or (run / run_files.EXPLANATIONS if verified.kind == "run" else None)
        self.cache = FeatureCache(cache)
        self.model = load_model(run)
        self.kinds = self.cache.modalities
        calibration = json.loads((run / run_files.CALIBRATION).read_text())
        self.calibrator = PlattCalibrator.from_json(calibration["fusion"])
        self.xgb_calibrator = PlattCalibrator.from_json(calibration["xgboost"])
        self.baseline = XGBoostBaseline.load(run / run_files.XGBOOST_MODEL)
        self.dataset = CacheDataset(self.cache)
        self.patients = self.cache.cohort["patient"].tolist()
        self.row_of_patient = {patient: row for row, patient in enumerate(self.patients)}
        self.baseline_features = BaselineFeatures(self.cache, self.model.embed_dim)
        backgrounds = load_backgrounds(run / run_files.EXPLAIN_BACKGROUND)
        self.contexts = {}
        for name, kind in self.kinds.items():
            context = get_kind(kind).attribution_context(self.cache, name, backgrounds.get(name))
            context.top_k = top_k
            self.contexts[name] = context

    def row_of(self, patient: str) -> int:
        """Cohort row of a patient given by pseudonym (as shown everywhere) or by source id."""
        if patient in self.row_of_patient:
            return self.row_of_patient[patient]
        from clinfuse.platform.security import Pseudonymiser, load_pseudonym_key

        pseudonym = Pseudonymiser(load_pseudonym_key())(patient)
        if pseudonym in self.row_of_patient:
            return self.row_of_patient[pseudonym]
        raise ClinFuseError(f"patient '{patient}' is not in the run's cohort", "use a pseudonym from the cache")

    def explain(self, patient: str, store_heatmaps: bool = True) -> PatientExplanation:
        row = self.row_of(patient)
        item = self.dataset[row]
        batch = default_collate([item])
        explanation = explain_patient(self.model, batch, self.kinds, self.calibrator, self.contexts,
                                      self.patients[row])  # fmt: skip
        explanation.xgboost = self._xgboost(row, batch)
        for name, entry in explanation.within.items():
            entry.update(get_kind(self.kinds[name]).describe_source(self.cache, name, int(self.cache.rows(name)[row])))
            heatmap = entry.get("heatmap_array")
            if heatmap is not None and store_heatmaps and self.heatmap_dir is not None:
                entry["heatmap"] = self._store_heatmap(name, self.patients[row], heatmap)
        return explanation

    def _xgboost(self, row: int, batch: dict) -> dict:
        """The baseline's TreeSHAP per modality for this patient (its image features are this model's
        embedding, computed here, so any cache works)."""
        with torch.no_grad():
            embeddings, _ = self.model.encode(batch)
        features = self.baseline_features(embeddings.numpy(), cohort_rows=np.array([row]))[0][0]
        values = xgboost_modality_values(self.baseline, features, self.xgb_calibrator)
        present = batch["present"][0].numpy()
        values["absent"] = [n for i, n in enumerate(self.kinds) if not present[i]]
        return values

    def _store_heatmap(self, modality: str, patient: str, heatmap: np.ndarray) -> str:
        self.heatmap_dir.mkdir(parents=True, exist_ok=True)
        path = self.heatmap_dir / f"{patient}_{modality}.npy"
        np.save(path, heatmap.astype(np.float16))
        return str(path.relative_to(self.run)) if path.is_relative_to(self.run) else str(path)
