"""Run a trained fusion model over every cohort patient: embeddings, modality logits, fusion logits.

The fusion logit is computed for the full presence mask and for each modality alone (the others masked), so
evaluation compares the same model with and without the other modalities.
"""

from __future__ import annotations

import numpy as np
import torch
from clinfuse.models.fusion import LateFusionModel
from clinfuse.pipelines.data import CacheDataset
from clinfuse.platform.cache import FeatureCache
from torch.utils.data import DataLoader


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: _to_device(v, device) if isinstance(v, dict) else v.to(device) for k, v in batch.items()}


@torch.no_grad()
def predict_cohort(model: LateFusionModel, cache: FeatureCache, batch_size: int = 64,
                   device: str | torch.device = "cpu", split: str | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Arrays over all cohort rows (or one split's): embeddings (N, M, D), modality_logits (N, M), present (N, M),
    fusion_logit (N,), single_logit (N, M) — the fusion logit with only modality m kept."""
    device = torch.device(device)
    model.eval().to(device)
    dataset = CacheDataset(cache, split)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("embeddings", "modality_logits", "present", "fusion_logit",
                                                            "single_logit")}  # fmt: skip
    for batch in loader:
        batch = _to_device(batch, device)
        embeddings, logits = model.encode(batch)
        present = batch["present"]
        singles = []
        for column in range(present.shape[1]):
            only = torch.zeros_like(present)
            only[:, column] = present[:, column]
            singles.append(model.head(embeddings, logits, only))
        parts["embeddings"].append(embeddings.float().cpu().numpy())
        parts["modality_logits"].append(logits.float().cpu().numpy())
        parts["present"].append(present.cpu().numpy())
        parts["fusion_logit"].append(model.head(embeddings, logits, present).float().cpu().numpy())
        parts["single_logit"].append(torch.stack(singles, dim=1).float().cpu().numpy())
    return {key: np.concatenate(values) for key, values in parts.items()}
