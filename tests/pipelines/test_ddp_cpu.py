"""`clinfuse train --strategy ddp --devices 2 --accelerator cpu`: two processes (gloo) against one, on CPU.

Lightning's DDP launcher re-runs the command line for rank 1, so the DDP run is the real CLI in a subprocess; the
single-process run is `train` with the same seed and the same patients per optimiser step (2 ranks x 8 = 16).
The cohort is NKI-70 (139 patients, two tables) with MLP table branches, so the predictions come from weights
trained by gradient. Both runs start from the same weights (DDP broadcasts rank 0's), but they cannot end with
the same ones: each rank draws its own share of each epoch from a distributed sampler and the same dropout and
modality-dropout masks as the other rank, so DDP is another realisation of the same stochastic training, as a
rerun with a different data order would be. Equivalent therefore means: what does not depend on that noise is
identical (architectures, screening, splits, epochs), rank 0's outputs are consistent with each other, and the
results agree within the tolerances below, set from seeds 0-3 (docs/experiments.md) under what changing the seed
moves.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from clinfuse.models import metrics
from clinfuse.models.calibration import PlattCalibrator
from clinfuse.pipelines.registry.model_folder import open_model
from clinfuse.pipelines.training import run_files
from clinfuse.pipelines.training.model_io import load_model
from clinfuse.pipelines.training.predict import predict_cohort
from clinfuse.pipelines.training.train import TrainSettings, train
from clinfuse.platform.cache import FeatureCache
from safetensors.torch import load_file

EPOCHS = 4
SEED = 0
RANKS = 2
RANK_BATCH = 8
# Tolerances, DDP against one process at the same seed: the largest gap measured over seeds 0-3, rounded up, each
# below the smallest gap between two seeds of the single-process run (in brackets; docs/experiments.md). Calibrated
# probability per patient, mean 0.069 [0.084] and max 0.21 [0.29]; each branch's weights, distance relative to their
# norm 0.090 [1.0: another seed starts elsewhere]. Not separating DDP from a reseed, only guarding against a broken
# run: fitted modality weights 0.028 [0.019-0.061], AUROC on validation and test 0.10 [0.0125-0.36]. The Platt slope
# is compared through the calibrated probabilities: on 21 validation patients it trades off against the logits'
# spread (DDP moved it by up to 5.0, a reseed by up to 10.6, while the probabilities moved as above).
TOLERANCE = {"prob_mean": 0.08, "prob_max": 0.25, "branch_weights": 0.15, "modality_weight": 0.04, "auroc": 0.12}


@pytest.fixture(scope="module")
def runs(nki_cache: Path, clinfuse_exe: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The DDP run (2 CPU processes) and the single-process run of the same training."""
    root = tmp_path_factory.mktemp("ddp")
    ddp = root / "ddp"
    options = {"--cache": nki_cache, "--out": ddp, "--table-encoder": "mlp", "--max-epochs": EPOCHS, "--seed": SEED,
               "--batch-size": RANK_BATCH, "--strategy": "ddp", "--devices": RANKS, "--accelerator": "cpu"}  # fmt: skip
    command = [str(clinfuse_exe), "train", "--split", *(str(part) for pair in options.items() for part in pair)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    settings = TrainSettings(max_epochs=EPOCHS, accelerator="cpu", seed=SEED, batch_size=RANKS * RANK_BATCH,
                             table_encoder="mlp")  # fmt: skip
    return {"ddp": ddp, "single": train(nki_cache, root / "single", settings)}


def _info(run: Path) -> dict:
    return json.loads((run / run_files.RUN_INFO).read_text())


def test_rank_zero_alone_writes_one_sealed_run_and_one_mlflow_run(runs: dict[str, Path]) -> None:
    from mlflow import MlflowClient

    ddp = runs["ddp"]
    assert open_model(ddp).kind == "run"  # every file listed in the manifest, none changed after sealing
    assert [p.name for p in ddp.parent.iterdir() if p.name.startswith(f".{ddp.name}.")] == [], "staging left over"
    assert len(list((ddp / "checkpoints").glob("*.ckpt"))) == 1
    assert [p.name for p in (ddp / "logs").iterdir()] == ["version_0"], "rank 1 wrote a log of its own"
    reference = _info(ddp)["mlflow"]
    client = MlflowClient(reference["tracking_uri"])
    recorded = client.search_runs([reference["experiment_id"]], f"tags.`clinfuse.run_folder` = '{ddp.resolve()}'")
    assert [r.info.run_id for r in recorded] == [reference["run_id"]], "one MLflow run per training, not per rank"
    assert recorded[0].info.status == "FINISHED"
    epochs = client.get_metric_history(reference["run_id"], "val_auroc")
    assert len(epochs) == EPOCHS


def test_rank_zero_calibrates_on_the_whole_validation_split(runs: dict[str, Path], nki_cache: Path) -> None:
    ddp = runs["ddp"]
    predictions = pd.read_parquet(ddp / run_files.PREDICTIONS)
    outputs = predict_cohort(load_model(ddp), FeatureCache(nki_cache))
    np.testing.assert_allclose(outputs["fusion_logit"], predictions["fusion_logit"], atol=1e-5)
    val = predictions[predictions["split"] == "val"]
    assert len(val) == _info(ddp)["split_sizes"]["val"]
    refit = PlattCalibrator.fit(val["fusion_logit_heldout"].to_numpy(), val["label"].to_numpy()).to_json()
    stored = json.loads((ddp / run_files.CALIBRATION).read_text())["fusion"]
    assert refit == pytest.approx(stored, abs=1e-9)
    saved = load_model(ddp).head.modality_weight
    assert torch.allclose(saved, torch.tensor(list(_info(ddp)["modality_weights"].values())), atol=1e-4)


def _relative_gap(weights: dict[str, dict[str, torch.Tensor]], prefix: str) -> float:
    """|DDP - single| / |single| over the weights whose names start with `prefix`, as one vector."""
    single, ddp = weights["single"], weights["ddp"]
    keys = [k for k, v in single.items() if k.startswith(prefix) and v.is_floating_point()]
    difference = torch.cat([(ddp[k] - single[k]).flatten() for k in keys])
    return float(difference.norm() / torch.cat([single[k].flatten() for k in keys]).norm())


def test_ddp_and_single_process_runs_are_equivalent(runs: dict[str, Path]) -> None:
    ddp, single = _info(runs["ddp"]), _info(runs["single"])
    for key in ("architectures", "input_screening", "split_sizes", "epochs_run", "modalities"):
        assert ddp[key] == single[key], key
    assert ddp["settings"]["batch_size"] * RANKS == single["settings"]["batch_size"]
    tables = {name: pd.read_parquet(run / run_files.PREDICTIONS) for name, run in runs.items()}
    probability_gap = (tables["ddp"]["fusion_prob"] - tables["single"]["fusion_prob"]).abs()
    assert probability_gap.mean() <= TOLERANCE["prob_mean"], probability_gap.describe()
    assert probability_gap.max() <= TOLERANCE["prob_max"], probability_gap.describe()
    for name, weight in ddp["modality_weights"].items():
        assert abs(weight - single["modality_weights"][name]) <= TOLERANCE["modality_weight"], name
    weights = {name: load_file(run / run_files.MODEL_WEIGHTS) for name, run in runs.items()}
    for branch in ddp["modalities"]:
        assert _relative_gap(weights, f"branches.{branch}.") <= TOLERANCE["branch_weights"], branch
    for split in ("val", "test"):
        rows = [t[t["split"] == split] for t in tables.values()]
        aurocs = [metrics.auroc(r["label"].to_numpy(), r["fusion_logit"].to_numpy()) for r in rows]
        assert abs(aurocs[0] - aurocs[1]) <= TOLERANCE["auroc"], (split, aurocs)


@pytest.mark.parametrize("name", ["single", "ddp"])  # Lightning's default sampler would repeat a patient under DDP
def test_the_validation_auroc_that_picks_the_checkpoint_counts_every_patient_once(
    name: str, runs: dict[str, Path], nki_cache: Path
) -> None:
    run = runs[name]
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model = load_model(run)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    cache = FeatureCache(nki_cache)
    labels = cache.cohort.loc[cache.cohort["split"] == "val", "label"].to_numpy()
    logits = predict_cohort(model, cache, split="val")["fusion_logit"]
    assert metrics.auroc(labels, logits) == pytest.approx(_info(run)["best_epoch_val_auroc"], abs=1e-6)
