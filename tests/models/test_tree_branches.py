"""Tree table branches: an XGBoost booster inside the fusion model, saved as safetensors, explained by TreeSHAP."""

from __future__ import annotations

import numpy as np
import torch
import xgboost as xgb
from clinfuse.models.encoders import EncoderSpec
from clinfuse.models.encoders.tree_table import TreeTableEncoder
from clinfuse.models.fusion import LateFusionModel
from clinfuse.models.tree_branches import DEPTHS, fit_tree_branch
from clinfuse.pipelines.training.model_io import load_model, save_model
from sklearn.metrics import roc_auc_score


def _threshold_cohort(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    logit = 4.0 * ((x[:, 0] > 0.5) & (x[:, 1] > 0)) - 1.5 + 1.0 * x[:, 2]
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def test_fit_chooses_depth_and_rounds_on_inner_folds_and_gives_out_of_fold_margins() -> None:
    x, y = _threshold_cohort()
    fit = fit_tree_branch(x, y, seed=0)
    assert fit.params["max_depth"] in DEPTHS and 1 <= fit.rounds < 1000
    in_sample = fit.booster.predict(xgb.DMatrix(x), output_margin=True)
    out_of_fold = in_sample + fit.out_of_fold_shift
    assert roc_auc_score(y, in_sample) > roc_auc_score(y, out_of_fold) > 0.7  # held out is honest, not useless


def test_tree_branch_round_trips_through_safetensors_and_treeshap_sums_to_the_margin(tmp_path) -> None:
    x, y = _threshold_cohort()
    fit = fit_tree_branch(x, y, seed=0)
    spec = EncoderSpec(kind="table", architecture="xgboost", embed_dim=8, dims={"features": 6})
    model = LateFusionModel({"labs": TreeTableEncoder(6, 8)}, embed_dim=8).eval()
    model.branches["labs"].encoder.set_booster(fit.booster)
    save_model(model, {"labs": spec}, 8, tmp_path)
    loaded = load_model(tmp_path)
    features = torch.as_tensor(x[:20], dtype=torch.float32)
    _, logit = loaded.branches["labs"]({"features": features})
    expected = fit.booster.predict(xgb.DMatrix(x[:20]), output_margin=True)
    np.testing.assert_allclose(logit.numpy(), expected, atol=1e-5)
    encoder = loaded.branches["labs"].encoder
    contributions = encoder.contributions(features).numpy()
    bias = fit.booster.predict(xgb.DMatrix(x[:20]), pred_contribs=True)[:, -1]
    np.testing.assert_allclose(contributions.sum(axis=1) + bias, expected, atol=1e-4)
    assert np.abs(contributions[:, :2]).mean() > np.abs(contributions[:, 3:]).mean()  # the planted features
