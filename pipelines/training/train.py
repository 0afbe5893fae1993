"""`clinfuse train`: fit the late-fusion model with the Lightning Trainer, calibrate it, fit the baseline.

Writes to the run folder: model.safetensors + model_spec.json, calibration.json, xgboost.json,
predictions.parquet (raw and calibrated probabilities of both models for every patient), explain_background,
run.json, Lightning logs (CSV; MLflow when a tracking URI is given) and checkpoints.
"""

from __future__ import annotations

import json
import platform as stdlib_platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from clinfuse.models.branch_early_stopping import BranchEarlyStopping
from clinfuse.models.calibration import BootstrapInterval, PlattCalibrator
from clinfuse.models.encoders import EncoderSpec
from clinfuse.models.encoders.registry import DEFAULT_ARCHITECTURES
from clinfuse.models.feature_screening import screen_features
from clinfuse.models.fusion import LateFusionModel
from clinfuse.models.lightning import LateFusionModule
from clinfuse.models.modality_weights import fit_modality_weights
from clinfuse.pipelines.data import CacheDataModule, default_num_workers, modality_dims
from clinfuse.pipelines.training import run_files
from clinfuse.pipelines.training.explain_background import fit_backgrounds, save_backgrounds
from clinfuse.pipelines.training.model_io import build_model, save_model
from clinfuse.pipelines.training.predict import predict_cohort
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.errors import ClinFuseError
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger

EMBED_DIM = 32


@dataclass(frozen=True)
class TrainSettings:
    max_epochs: int = 40
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    seed: int = 0
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 10
    branch_patience: int = 5  # epochs a branch's own validation loss may go without falling before it is frozen
    screening_fdr: float | None = 0.1  # table inputs kept by Benjamini-Hochberg on the training split; None: all
    screening_min_features: int = 10
    image_encoder: str | None = None  # default: densenet121 on GPU, small_cnn on CPU
    num_workers: int | None = None
    mlflow_tracking_uri: str | None = None


def train(cache_path: Path, out: Path, settings: TrainSettings) -> Path:
    """Train, calibrate and write everything evaluation and scoring need to `out`."""
    started = time.perf_counter()
    cache = FeatureCache(cache_path)
    _check_cohort(cache)
    pl.seed_everything(settings.seed, workers=True)
    accelerator = _resolve_accelerator(settings.accelerator)
    specs = _encoder_specs(cache, accelerator, settings.image_encoder)
    model = build_model(specs, EMBED_DIM)
    screening = _screen_inputs(model, cache, settings)
    has_images = any(s.kind == "dicom" for s in specs.values())
    module = LateFusionModule(model, learning_rate=settings.learning_rate,
                              channels_last=accelerator == "gpu" and has_images)  # fmt: skip
    workers = settings.num_workers if settings.num_workers is not None else default_num_workers(accelerator)
    data = CacheDataModule(str(cache_path), batch_size=settings.batch_size, num_workers=workers,
                           augment_seed=settings.seed)  # fmt: skip

    out.mkdir(parents=True, exist_ok=True)
    _clear_previous_outputs(out)
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", monitor="val_auroc", mode="max", save_top_k=1,
                                 filename="best-{epoch}")  # fmt: skip
    branch_stopping = BranchEarlyStopping(settings.branch_patience)
    trainer = pl.Trainer(
        max_epochs=settings.max_epochs,
        accelerator=accelerator,
        devices=settings.devices,
        num_nodes=settings.num_nodes,
        strategy=settings.strategy,
        precision="bf16-mixed" if accelerator == "gpu" else "32-true",
        callbacks=[
            checkpoint,
            branch_stopping,
            EarlyStopping(monitor="val_auroc", mode="max", patience=settings.patience),
        ],  # fmt: skip
        logger=_loggers(out, settings),
        log_every_n_steps=5,
        enable_model_summary=False,
        default_root_dir=out,
    )
    trainer.fit(module, datamodule=data)
    if not trainer.is_global_zero:
        return out
    # Our own checkpoint from this run: tensors only (weights_only), then exported as safetensors.
    state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    model = module.model.to(memory_format=torch.contiguous_format).float().eval()
    device = "cuda" if accelerator == "gpu" else "cpu"
    logit_centers, modality_weights = _fit_head_buffers(model, cache, device)
    save_model(model, specs, EMBED_DIM, out)
    _write_predictions(model, cache, out, settings, device=device)
    info = {
        "cache": str(Path(cache_path).resolve()),
        "cache_fingerprints": cache.manifest["fingerprints"],
        "cohort_name": cache.manifest.get("cohort_name"),
        "modalities": cache.modalities,
        "settings": settings.__dict__ | {"accelerator_used": accelerator, "num_workers_used": workers},
        "best_epoch_val_auroc": float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None,
        "epochs_run": trainer.current_epoch,
        "branches": branch_stopping.summary(),
        "logit_centers": logit_centers,
        "modality_weights": modality_weights,
        "input_screening": screening,
        "duration_s": round(time.perf_counter() - started, 1),
        "versions": {"torch": torch.__version__, "pytorch_lightning": pl.__version__,
                     "python": stdlib_platform.python_version()},
    }  # fmt: skip
    (out / run_files.RUN_INFO).write_text(json.dumps(info, indent=1))
    return out


def _screen_inputs(model: LateFusionModel, cache: FeatureCache, settings: TrainSettings) -> dict[str, dict]:
    """Screen the inputs of every encoder that accepts a feature mask, on that modality's training patients."""
    if settings.screening_fdr is None:
        return {}
    summaries = {}
    train = cache.cohort[cache.cohort["split"] == "train"]
    for name, branch in model.branches.items():
        if not hasattr(branch.encoder, "set_feature_mask"):
            continue
        table = cache.table(name, "features").drop(columns=["patient"])
        present = train[train[f"present_{name}"]]
        features = table.to_numpy(np.float64)[present[f"row_{name}"].to_numpy()]
        result = screen_features(features, present["label"].to_numpy(), settings.screening_fdr,
                                 settings.screening_min_features)  # fmt: skip
        branch.encoder.set_feature_mask(torch.as_tensor(result.keep))
        summaries[name] = result.summary(list(table.columns))
    return summaries


def _fit_head_buffers(model: LateFusionModel, cache: FeatureCache, device: str) -> tuple[dict, dict]:
    """Centre each branch logit on its training mean, then refit the modality weights on validation.

    Centres: each branch's mean logit over the training patients who have the modality, in eval mode. The
    centres tracked during training average training-mode logits (augmented images, batch statistics), which
    sit elsewhere: 0.5 logit apart for the image branch on a 1,000-patient demo cohort (seed 3), enough to make
    almost every image pull the risk down. Weights: see models/modality_weights.py.
    One encoding pass serves both: neither buffer changes the encoders' outputs, nor the rest of the head
    (prior + interaction), which is the fusion logit less its weighted centred logits.
    """
    head = model.head
    encoded = predict_cohort(model, cache, device=device)
    logits, present = encoded["modality_logits"], encoded["present"]
    centers, weights = head.logit_center.cpu().numpy().copy(), head.modality_weight.cpu().numpy()
    offset = encoded["fusion_logit"] - ((logits - centers) * present * weights).sum(axis=1)
    split = cache.cohort["split"].to_numpy()
    for column in range(centers.size):
        rows = (split == "train") & (present[:, column] > 0)
        if rows.any():
            centers[column] = logits[rows, column].mean()
    val = split == "val"
    weights = fit_modality_weights(logits[val] - centers, present[val], offset[val],
                                   cache.cohort["label"].to_numpy()[val])  # fmt: skip
    head.logit_center.copy_(torch.as_tensor(centers, dtype=head.logit_center.dtype))
    head.modality_weight.copy_(torch.as_tensor(weights, dtype=head.modality_weight.dtype))
    return _by_modality(model, centers), _by_modality(model, weights)


def _by_modality(model: LateFusionModel, values: np.ndarray) -> dict[str, float]:
    return {name: round(float(v), 4) for name, v in zip(model.modalities, values, strict=True)}


def _write_predictions(model, cache: FeatureCache, out: Path, settings: TrainSettings, device: str) -> None:
    from clinfuse.models.baseline import XGBoostBaseline
    from clinfuse.pipelines.training.baseline_features import BaselineFeatures

    outputs = predict_cohort(model, cache, device=device)
    cohort = cache.cohort
    split = cohort["split"].to_numpy()
    labels = cohort["label"].to_numpy()
    val = split == "val"
    fusion_calibrator = PlattCalibrator.fit(outputs["fusion_logit"][val], labels[val])

    features, names = BaselineFeatures(cache)(outputs["embeddings"])
    train_rows = split == "train"
    baseline = XGBoostBaseline(names, seed=settings.seed).fit(features[train_rows], labels[train_rows],
                                                              features[val], labels[val])  # fmt: skip
    baseline.save(out / run_files.XGBOOST_MODEL)
    xgb_logit = baseline.logit(features)
    xgb_calibrator = PlattCalibrator.fit(xgb_logit[val], labels[val])

    table = cohort[[c for c in ("patient", "split", "label", "sex", "age") if c in cohort]].copy()
    table["fusion_logit"] = outputs["fusion_logit"]
    table["fusion_prob_raw"] = 1.0 / (1.0 + np.exp(-outputs["fusion_logit"]))
    table["fusion_prob"] = fusion_calibrator.probability(outputs["fusion_logit"])
    table["xgboost_logit"] = xgb_logit
    table["xgboost_prob_raw"] = 1.0 / (1.0 + np.exp(-xgb_logit))
    table["xgboost_prob"] = xgb_calibrator.probability(xgb_logit)
    for column, name in enumerate(cache.modalities):
        table[f"present_{name}"] = outputs["present"][:, column] > 0
        table[f"single_logit_{name}"] = outputs["single_logit"][:, column]
    table.to_parquet(out / run_files.PREDICTIONS, index=False)
    save_backgrounds(fit_backgrounds(cache, settings.seed), out / run_files.EXPLAIN_BACKGROUND)
    interval = BootstrapInterval.fit(outputs["fusion_logit"][val], labels[val], seed=settings.seed)
    calibration = {"fusion": fusion_calibrator.to_json(), "xgboost": xgb_calibrator.to_json(),
                   "fusion_interval": interval.to_json(), "fitted_on": "val", "method": "platt"}  # fmt: skip
    (out / run_files.CALIBRATION).write_text(json.dumps(calibration, indent=1))


def _clear_previous_outputs(out: Path) -> None:
    """Retraining into a run folder must not leave an earlier model's checkpoints, metrics or heatmaps."""
    import shutil

    for name in ("checkpoints", run_files.EXPLANATIONS):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (run_files.METRICS, run_files.REPORT, run_files.CALIBRATION_PLOT):
        (out / name).unlink(missing_ok=True)


def _check_cohort(cache: FeatureCache) -> None:
    counts = cache.cohort.groupby("split")["label"].agg(["sum", "count"])
    for split in ("train", "val"):
        if split not in counts.index or counts.loc[split, "sum"] in (0, counts.loc[split, "count"]):
            raise ClinFuseError(f"the {split} split needs patients of both labels", "enlarge the cohort or re-split")


def _resolve_accelerator(requested: str) -> str:
    if requested in {"gpu", "cuda"}:
        if not torch.cuda.is_available():
            raise ClinFuseError(
                "--accelerator gpu was requested but no CUDA device is visible", "use --accelerator cpu"
            )
        return "gpu"
    if requested == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if requested != "cpu":
        raise ClinFuseError(f"unknown --accelerator '{requested}'", "use auto, cpu or gpu")
    return "cpu"


def _encoder_specs(cache: FeatureCache, accelerator: str, image_encoder: str | None) -> dict[str, EncoderSpec]:
    dims = modality_dims(cache)
    specs = {}
    for name, kind in cache.modalities.items():
        architecture = DEFAULT_ARCHITECTURES[kind][accelerator]
        if kind == "dicom" and image_encoder:
            architecture = image_encoder
        specs[name] = EncoderSpec(kind=kind, architecture=architecture, embed_dim=EMBED_DIM, dims=dims[name])
    return specs


def _loggers(out: Path, settings: TrainSettings) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(out, name="logs")]
    if settings.mlflow_tracking_uri:
        from pytorch_lightning.loggers import MLFlowLogger

        loggers.append(MLFlowLogger(experiment_name="clinfuse-train", tracking_uri=settings.mlflow_tracking_uri))
    return loggers
