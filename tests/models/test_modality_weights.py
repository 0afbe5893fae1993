"""Validation-fitted modality weights: they undo an overconfident branch and silence an uninformative one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clinfuse.models.fusion import FusionHead
from clinfuse.models.modality_weights import fit_modality_weights


def _patients(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two informative modality signals and one pure-noise modality; labels drawn from the informative ones."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(n, 2))
    labels = rng.random(n) < 1.0 / (1.0 + np.exp(-(signal[:, 0] + signal[:, 1])))
    logits = np.column_stack([3.0 * signal[:, 0], signal[:, 1], 2.0 * rng.normal(size=n)])  # 0: 3x overconfident
    present = (rng.random((n, 3)) < 0.8).astype(np.float32)
    return logits, present, labels.astype(float)


def test_weights_undo_an_overconfident_branch_and_drop_a_noise_branch() -> None:
    logits, present, labels = _patients(4000, seed=0)
    weights = fit_modality_weights(logits, present, np.zeros(len(labels)), labels, ridge=1.0)
    assert abs(weights[0] - 1 / 3) < 0.08
    assert abs(weights[1] - 1.0) < 0.15
    assert weights[2] < 0.08


def test_the_ridge_keeps_a_small_split_near_the_trained_combination() -> None:
    logits, present, labels = _patients(60, seed=1)
    loose = fit_modality_weights(logits, present, np.zeros(60), labels, ridge=0.01)
    firm = fit_modality_weights(logits, present, np.zeros(60), labels, ridge=1000.0)
    assert np.all(np.abs(firm - 1.0) < 0.05)
    assert np.abs(loose - 1.0).max() > np.abs(firm - 1.0).max()
    assert np.all(loose >= 0.0)


def test_head_scales_each_present_logit_by_its_weight() -> None:
    head = FusionHead(n_modalities=2, embed_dim=4).eval()
    embeddings, logits = torch.zeros(3, 2, 4), torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    head.modality_weight.copy_(torch.tensor([0.5, 0.0]))
    assert torch.allclose(head(embeddings, logits, mask), torch.tensor([0.5, 0.5, 0.0]))
    assert "modality_weight" in head.state_dict()  # saved with the weights, so scoring uses the fitted values


def test_models_saved_before_later_buffers_load_with_their_neutral_values(tmp_path) -> None:
    from clinfuse.models.encoders import EncoderSpec
    from clinfuse.pipelines.training.model_io import build_model, load_model, save_model
    from clinfuse.platform.errors import ClinFuseError
    from safetensors.torch import load_file, save_file

    specs = {"genes": EncoderSpec(kind="table", architecture="mlp", embed_dim=4, dims={"features": 3})}
    model = build_model(specs, 4)
    model.head.modality_weight.fill_(0.25)
    save_model(model, specs, 4, tmp_path)
    assert load_model(tmp_path).head.modality_weight.tolist() == [0.25]
    later = {"head.modality_weight", "head.logit_center", "branches.genes.encoder.feature_mask"}
    older = {k: v for k, v in load_file(tmp_path / "model.safetensors").items() if k not in later}
    save_file(older, tmp_path / "model.safetensors")
    loaded = load_model(tmp_path)
    assert loaded.head.modality_weight.tolist() == [1.0] and loaded.head.logit_center.tolist() == [0.0]
    assert loaded.branches["genes"].encoder.feature_mask.tolist() == [1.0, 1.0, 1.0]
    del older["head.prior"]
    save_file(older, tmp_path / "model.safetensors")
    with pytest.raises(ClinFuseError, match="head.prior.*retrain"):  # a missing trained parameter is still refused
        load_model(tmp_path)
