"""`clinfuse explain`: load a run and its feature cache, explain one patient, store the image heatmap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from clinfuse.models.baseline import XGBoostBaseline
from clinfuse.models.calibration import PlattCalibrator
from clinfuse.models.explain.patient import PatientExplanation, explain_patient
from clinfuse.models.explain.tree_shap import xgboost_modality_values
from clinfuse.models.explain.within_modality import AttributionContext
from clinfuse.pipelines.data import CacheDataset
from clinfuse.pipelines.training import run_files
from clinfuse.pipelines.training.model_io import load_model
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.errors import ClinFuseError
from torch.utils.data import default_collate

BACKGROUND_PATIENTS = 100


class RunExplainer:
    """Everything needed to explain patients of one run, loaded once."""

    def __init__(self, run: Path, cache: Path | None = None, top_k: int = 20) -> None:
        if not (run / run_files.MODEL_WEIGHTS).is_file():
            raise ClinFuseError(f"{run} holds no trained model", "pass the --out folder of `clinfuse train`")
        info = json.loads((run / run_files.RUN_INFO).read_text())
        self.run = run
        self.cache = FeatureCache(cache or info["cache"])
        self.model = load_model(run)
        self.kinds = self.cache.modalities
        calibration = json.loads((run / run_files.CALIBRATION).read_text())
        self.calibrator = PlattCalibrator.from_json(calibration["fusion"])
        self.xgb_calibrator = PlattCalibrator.from_json(calibration["xgboost"])
        self.baseline = XGBoostBaseline.load(run / run_files.XGBOOST_MODEL)
        self.dataset = CacheDataset(self.cache)
        self.patients = self.cache.cohort["patient"].tolist()
        self.row_of_patient = {patient: row for row, patient in enumerate(self.patients)}
        self._baseline_features: np.ndarray | None = None
        self.contexts = {name: self._context(name, kind, top_k) for name, kind in self.kinds.items()}

    def _context(self, name: str, kind: str, top_k: int) -> AttributionContext:
        context = AttributionContext(top_k=top_k)
        if kind == "table":
            table = self.cache.table(name, "features")
            context.feature_names = [c for c in table.columns if c != "patient"]
            train = self.cache.cohort.loc[self.cache.cohort["split"] == "train", "patient"]
            values = table[table["patient"].isin(train)].drop(columns=["patient"]).to_numpy(np.float32)
            rng = np.random.default_rng(0)
            sample = values[rng.choice(len(values), size=min(BACKGROUND_PATIENTS, len(values)), replace=False)]
            context.background = {"features": torch.from_numpy(sample)}
        elif kind == "ehr":
            alignment = self.cache.json(name, "alignment")
            context.vocabulary = alignment["vocabulary"]
            context.lab_items = alignment["lab_items"]
            context.texts = self.cache.json(name, "code_texts")
        return context

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
        explanation.xgboost = self._xgboost(row, batch["present"][0].numpy())
        for name, entry in explanation.within.items():
            heatmap = entry.get("heatmap_array")
            if heatmap is not None and store_heatmaps:
                entry["heatmap"] = self._store_heatmap(name, self.patients[row], heatmap)
                source = self.cache.json(name, "images")["rows"][int(self.cache.rows(name)[row])]
                entry["source_geometry"] = {"rows": source["rows"], "cols": source["cols"],
                                            "size": int(heatmap.shape[-1])}  # fmt: skip
        return explanation

    def _xgboost(self, row: int, present: np.ndarray) -> dict:
        if self._baseline_features is None:
            from clinfuse.pipelines.training.baseline_features import baseline_features

            embeddings = np.load(self.run / run_files.EMBEDDINGS)
            self._baseline_features = baseline_features(self.cache, embeddings)[0]
        values = xgboost_modality_values(self.baseline, self._baseline_features[row], self.xgb_calibrator)
        values["absent"] = [n for i, n in enumerate(self.kinds) if not present[i]]
        return values

    def _store_heatmap(self, modality: str, patient: str, heatmap: np.ndarray) -> str:
        folder = self.run / run_files.EXPLANATIONS
        folder.mkdir(exist_ok=True)
        path = folder / f"{patient}_{modality}.npy"
        np.save(path, heatmap.astype(np.float16))
        return str(path.relative_to(self.run))
