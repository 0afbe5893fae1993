"""One structured explanation per patient: modality Shapley values, baseline TreeSHAP, inside-modality tops."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from clinfuse.models.calibration import PlattCalibrator
from clinfuse.models.explain.modality_shapley import ModalityShapley, modality_shapley
from clinfuse.models.explain.within_modality import AttributionContext
from clinfuse.models.fusion import LateFusionModel
from clinfuse.platform.kinds import get_kind


@dataclass
class PatientExplanation:
    """Why a patient's risk is what it is. Absent modalities are listed as absent and carry no value."""

    patient: str
    risk: float
    risk_raw: float
    modality: ModalityShapley
    within: dict[str, dict] = field(default_factory=dict)
    xgboost: dict | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        for entry in data["within"].values():
            entry.pop("heatmap_array", None)
        return data


def explain_patient(
    model: LateFusionModel,
    batch: dict,
    kinds: dict[str, str],
    calibrator: PlattCalibrator,
    contexts: dict[str, AttributionContext],
    patient: str,
) -> PatientExplanation:
    """Explain one patient given a batch of size one (as CacheDataset yields it, collated)."""
    model.eval()
    with torch.no_grad():
        embeddings, logits = model.encode(batch)
        raw_logit = float(model.head(embeddings, logits, batch["present"])[0])
    present = batch["present"][0].numpy()
    shapley = modality_shapley(model.head, embeddings[0].numpy(), logits[0].numpy(), present, model.modalities,
                               calibrator)  # fmt: skip
    within = {}
    for column, name in enumerate(model.modalities):
        if not present[column]:
            continue
        attribution = get_kind(kinds[name]).attribute(model.branches[name], batch["inputs"][name], contexts[name])
        within[name] = {"kind": attribution.kind, "top": attribution.top, "heatmap_array": attribution.heatmap,
                        "detail": attribution.detail}  # fmt: skip
    return PatientExplanation(
        patient=patient,
        risk=float(calibrator.probability(np.array([raw_logit]))[0]),
        risk_raw=float(1.0 / (1.0 + np.exp(-raw_logit))),
        modality=shapley,
        within=within,
    )
