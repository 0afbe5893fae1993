"""`clinfuse train`: fit the late-fusion model with the Lightning Trainer, calibrate it, fit the baseline.

Writes to the run folder: model.safetensors + model_spec.json, calibration.json, xgboost.json,
predictions.parquet (raw and calibrated probabilities of both models for every patient), explain_background
(not for a cross-validation fold), run.json, Lightning's CSV logs and checkpoints (when a branch is trained by
gradient); and records the training as an MLflow run (tracking.py).
"""

from __future__ import annotations

import json
import os
import platform as stdlib_platform
import random
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from clinfuse.models.calibration import BootstrapInterval, PlattCalibrator
from clinfuse.models.encoders import EncoderSpec
from clinfuse.models.feature_screening import screen_features
from clinfuse.models.fusion import LateFusionModel
from clinfuse.models.modality_weights import fit_head_weights, fit_modality_weights
from clinfuse.pipelines.data import modality_dims
from clinfuse.pipelines.registry.manifest import MANIFEST_FILE
from clinfuse.pipelines.registry.model_folder import seal_run
from clinfuse.pipelines.training import run_files, tracking
from clinfuse.pipelines.training.explain_background import fit_backgrounds, save_backgrounds
from clinfuse.pipelines.training.model_io import build_model, save_model
from clinfuse.pipelines.training.predict import predict_cohort
from clinfuse.pipelines.training.table_branches import OutsideFit, choose_table_architectures, fit_outside_branches
from clinfuse.pipelines.training.tracking import TrainingRun
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds import get_kind
from clinfuse.platform.staging import StagedFolder

if TYPE_CHECKING:
    from pytorch_lightning.loggers import Logger

# Lightning (with the torchmetrics and torchvision it imports) is imported only where a branch is trained by
# gradient: importing it takes longer than a whole table-only training.
EMBED_DIM = 32
STAGING_ENV = "CLINFUSE_RUN_STAGING"  # Lightning's DDP ranks re-run the command: they join rank 0's staging folder


@dataclass(frozen=True)
class TrainSettings:
    max_epochs: int = 40
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # Lightning precision; auto: bf16-mixed on GPU, 32-true on CPU
    image_channels_last: bool | None = None  # image batches in channels-last memory format; None: on GPU only
    seed: int = 0
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 10
    branch_patience: int = 5  # epochs a branch's own validation loss may go without falling before it is frozen
    screening_fdr: float | None = 0.1  # table inputs kept by Benjamini-Hochberg on the training split; None: all
    screening_min_features: int = 10
    encoders: dict[str, str] = field(default_factory=dict)  # modality name or kind -> architecture; else default
    table_encoder: str = "auto"  # linear, xgboost, mlp, snn; auto: chosen per table modality (branch_selection.py)
    num_workers: int | None = None
    mlflow_tracking_uri: str | None = None  # the store of the training's MLflow run; None: the model registry's


def train(cache_path: Path, out: Path, settings: TrainSettings, splits: np.ndarray | None = None) -> Path:
    """Train, calibrate and write everything evaluation and scoring need to the run folder `out`.

    The run is built in a hidden sibling folder, sealed with its manifest and swapped in whole, so a killed
    training leaves the previous run as it was. `splits` (one of train/val/test per cohort row) replaces the
    cache's own split; the cache itself is not touched.
    """
    check_run_destination(out)
    staged = StagedFolder(out, join_env=STAGING_ENV)
    with open_tracking(cache_path, out, settings) as tracked, staged as staging:
        if train_into(cache_path, staging, settings, splits, tracked) is not None:
            if tracked is not None:
                tracked.log_run_info(staging)
            seal_run(staging)
            staged.commit()
    return out


def open_tracking(cache_path: Path, out: Path, settings: TrainSettings) -> AbstractContextManager[TrainingRun | None]:
    """The training's MLflow run (tracking.training_run), opened before anything is trained."""
    return tracking.training_run(cache_path, out, settings.__dict__, settings.mlflow_tracking_uri)


def check_run_destination(out: Path) -> None:
    """A run is swapped in whole, replacing `out`: refuse anything at `out` that is not an earlier run."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / run_files.RUN_INFO).is_file()
                                              and not (out / MANIFEST_FILE).is_file())):  # fmt: skip
        raise ClinFuseError(f"--out {out} exists and is not a ClinFuse run folder (retraining replaces the folder "
                            "whole)", "choose a new or empty folder for the run")  # fmt: skip


def train_into(cache_path: Path, out: Path, settings: TrainSettings, splits: np.ndarray | None = None,
               tracked: TrainingRun | None = None, deployable: bool = True) -> Path | None:  # fmt: skip
    """Train into the (new, empty) folder `out`, unsealed; None on a non-zero rank of a multi-device run.
    `tracked`: the MLflow run that receives the epoch metrics and that run.json names. `deployable`: False for a
    cross-validation fold, which is evaluated but never explained, so it gets no explanation background."""
    started = time.perf_counter()
    cache = FeatureCache(cache_path)
    if splits is not None:
        cache = cache.with_splits(splits)
    _check_cohort(cache)
    seed_everything(settings.seed)
    accelerator = _resolve_accelerator(settings.accelerator)
    table_architectures, table_evidence = choose_table_architectures(cache, settings.table_encoder, settings.seed)
    specs = _encoder_specs(cache, accelerator, settings.encoders, table_architectures)
    model = build_model(specs, EMBED_DIM)
    # Without a branch to train by gradient nothing needs a validation split to stop on: the linear fit takes
    # training + validation patients, and calibration uses its inner out-of-fold logits.
    gradient = any(parameter.requires_grad for parameter in model.branches.parameters())
    fit_splits = ("train",) if gradient else ("train", "val")
    outside = fit_outside_branches(model, cache, settings.seed, fit_splits)
    screening = _screen_inputs(model, cache, settings)

    out.mkdir(parents=True, exist_ok=True)
    if gradient:
        fitted = _fit_with_lightning(model, cache_path, out, settings, accelerator, specs, splits, tracked)
        if fitted is None:  # a non-zero rank of a multi-device run: rank 0 writes the outputs
            return None
        model, workers, training = fitted
    else:
        model, workers, training = _fit_prior_only(model, cache, fit_splits), 0, {"gradient_training": False}
    device = "cuda" if accelerator == "gpu" else "cpu"
    head_fit = _fit_head_buffers(model, cache, device, outside, gradient, fit_splits)
    save_model(model, specs, EMBED_DIM, out)
    calibration_splits = ("val",) if gradient else fit_splits
    heldout_shift = outside.shift @ model.head.modality_weight.cpu().numpy()
    baseline_settings = _write_predictions(model, cache, out, settings, device, heldout_shift, calibration_splits)
    if deployable:
        save_backgrounds(fit_backgrounds(cache, settings.seed), out / run_files.EXPLAIN_BACKGROUND)
    info = {
        "cache": str(Path(cache_path).resolve()),
        "cache_fingerprints": cache.manifest["fingerprints"],
        "cohort_name": cache.manifest.get("cohort_name"),
        "modalities": cache.modalities,
        "settings": settings.__dict__ | {"accelerator_used": accelerator, "num_workers_used": workers},
        **training,
        "architectures": {name: spec.architecture for name, spec in specs.items()},
        "table_branch_selection": table_evidence,
        "linear_branches": outside.summary.get("linear"),
        "tree_branches": {name: fit for name, fit in outside.summary.items() if name != "linear"},
        "xgboost_baseline": baseline_settings,
        **head_fit,
        "input_screening": screening,
        "split_sizes": cache.cohort["split"].value_counts().to_dict(),
        "duration_s": round(time.perf_counter() - started, 1),
        "versions": {"torch": torch.__version__, "pytorch_lightning": version("pytorch-lightning"),
                     "python": stdlib_platform.python_version()},
        **({"mlflow": tracked.reference} if tracked is not None else {}),
    }  # fmt: skip
    (out / run_files.RUN_INFO).write_text(json.dumps(info, indent=1))
    return out


def _fit_with_lightning(model: LateFusionModel, cache_path: Path, out: Path, settings: TrainSettings,
                        accelerator: str, specs: dict[str, EncoderSpec], splits: np.ndarray | None,
                        tracked: TrainingRun | None) -> tuple[LateFusionModel, int, dict] | None:  # fmt: skip
    """Gradient training of the branches that need it and of the head; the best checkpoint, on rank 0."""
    import pytorch_lightning as pl
    from clinfuse.models.branch_early_stopping import BranchEarlyStopping
    from clinfuse.models.lightning import LateFusionModule
    from clinfuse.pipelines.data import default_num_workers
    from clinfuse.pipelines.data_module import CacheDataModule
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    has_images = any(get_kind(s.kind).channels_last for s in specs.values())
    channels_last = settings.image_channels_last if settings.image_channels_last is not None else accelerator == "gpu"
    module = LateFusionModule(model, learning_rate=settings.learning_rate,
                              channels_last=channels_last and has_images)  # fmt: skip
    workers = settings.num_workers if settings.num_workers is not None else default_num_workers(accelerator)
    data = CacheDataModule(str(cache_path), batch_size=settings.batch_size, num_workers=workers,
                           augment_seed=settings.seed, splits=None if splits is None else list(splits))  # fmt: skip
    # weights only: the best epoch's weights are all that is restored (an optimizer's state would triple the writes)
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", monitor="val_auroc", mode="max", save_top_k=1,
                                 filename="best-{epoch}", save_weights_only=True)  # fmt: skip
    branch_stopping = BranchEarlyStopping(settings.branch_patience)
    trainer = pl.Trainer(
        max_epochs=settings.max_epochs,
        accelerator=accelerator,
        devices=settings.devices,
        num_nodes=settings.num_nodes,
        strategy=_strategy(settings.strategy),
        precision=resolve_precision(settings.precision, accelerator),
        callbacks=[
            checkpoint,
            branch_stopping,
            EarlyStopping(monitor="val_auroc", mode="max", patience=settings.patience),
        ],  # fmt: skip
        logger=_loggers(out, tracked),
        log_every_n_steps=5,
        enable_model_summary=False,
        default_root_dir=out,
    )
    trainer.fit(module, datamodule=data)
    if not trainer.is_global_zero:
        return None
    # Our own checkpoint from this run: tensors only (weights_only), then exported as safetensors.
    state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    model = module.model.to(memory_format=torch.contiguous_format).float().eval()
    best = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None
    return model, workers, {"gradient_training": True, "best_epoch_val_auroc": best,
                            "epochs_run": trainer.current_epoch, "branches": branch_stopping.summary()}  # fmt: skip


def seed_everything(seed: int) -> None:
    """What Lightning's `seed_everything(seed, workers=True)` sets (Python's, NumPy's and torch's generators; the
    variables its Trainer and DDP launcher read), without importing Lightning for a run that never uses it."""
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PL_SEED_WORKERS"] = "1"


def _strategy(strategy: str) -> str:
    """Plain DDP fails as soon as branch early stopping freezes a branch (its parameters then get no gradient):
    `ddp` finds unused parameters."""
    return "ddp_find_unused_parameters_true" if strategy == "ddp" else strategy


PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")


def resolve_precision(precision: str, accelerator: str) -> str:
    """`auto` is bf16 autocast on GPU (its range needs no loss scaling) and full float32 on CPU, where bf16
    autocast is slower on most processors; an explicit choice runs as given, on either (the CPU tests use it)."""
    if precision not in PRECISIONS:
        raise ClinFuseError(f"unknown precision '{precision}'", f"use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16-mixed" if accelerator == "gpu" else "32-true"
    return precision


def _fit_prior_only(model: LateFusionModel, cache: FeatureCache, fit_splits: tuple[str, ...]) -> LateFusionModel:
    """Every branch was fitted outside (linear): no gradient step is left but the prior, the fitted log-odds.

    The interaction MLP keeps its zero initial output: with nothing trained by gradient, an additive head is
    what the fitted branches define.
    """
    train = cache.cohort.loc[cache.cohort["split"].isin(fit_splits), "label"].to_numpy(np.float64)
    rate = float(np.clip(train.mean(), 1e-6, 1 - 1e-6))
    with torch.no_grad():
        model.head.prior.fill_(float(np.log(rate / (1 - rate))))
    return model.eval()


def _screen_inputs(model: LateFusionModel, cache: FeatureCache, settings: TrainSettings) -> dict[str, dict]:
    """Screen the inputs of every encoder that accepts a feature mask, on that modality's training patients."""
    if settings.screening_fdr is None:
        return {}
    summaries = {}
    train = cache.cohort[cache.cohort["split"] == "train"]
    for name, branch in model.branches.items():
        if not hasattr(branch.encoder, "set_feature_mask"):
            continue
        table = get_kind(cache.modalities[name]).feature_table(cache, name).drop(columns=["patient"])
        present = train[train[f"present_{name}"]]
        features = table.to_numpy(np.float64)[present[f"row_{name}"].to_numpy()]
        result = screen_features(features, present["label"].to_numpy(), settings.screening_fdr,
                                 settings.screening_min_features)  # fmt: skip
        branch.encoder.set_feature_mask(torch.as_tensor(result.keep))
        summaries[name] = result.summary(list(table.columns))
    return summaries


def _fit_head_buffers(model: LateFusionModel, cache: FeatureCache, device: str, outside: OutsideFit,
                      gradient: bool, fit_splits: tuple[str, ...]) -> dict[str, dict | float]:  # fmt: skip
    """Centre each branch logit on its fitted patients' mean, then fit the modality (and interaction) weights.

    Centres: each branch's mean logit over the patients it was fitted on who have the modality, in eval mode.
    The centres tracked during training average training-mode logits (augmented images, batch statistics),
    which sit elsewhere: 0.5 logit apart for the image branch on a 1,000-patient demo cohort (seed 3), enough
    to make almost every image pull the risk down. Weights (models/modality_weights.py):
    - after gradient training, on the validation split, with the interaction MLP's weight;
    - without it, when trees are among the branches, on the fitted patients' inner out-of-fold logits (stacked
      generalisation without spending a validation split), the linear branches sharing one weight;
    - with only linear branches, 1: they are one regression whose penalty inner folds chose.
    One encoding pass serves all: no buffer changes the encoders' outputs, the prior or the interaction's.
    """
    head = model.head
    encoded = predict_cohort(model, cache, device=device)
    logits, present = encoded["modality_logits"], encoded["present"]
    centers = head.logit_center.cpu().numpy().copy()
    split = cache.cohort["split"].to_numpy()
    labels = cache.cohort["label"].to_numpy()
    for column in range(centers.size):
        rows = np.isin(split, fit_splits) & (present[:, column] > 0)
        if rows.any():
            centers[column] = logits[rows, column].mean()
    head.logit_center.copy_(torch.as_tensor(centers, dtype=head.logit_center.dtype))
    prior = np.full(len(logits), float(head.prior.detach().cpu()))
    weights, interaction_weight = head.modality_weight.cpu().numpy(), float(head.interaction_weight)
    if gradient:
        with torch.no_grad():
            interaction = (
                head.interaction_term(
                    torch.as_tensor(encoded["embeddings"]).to(head.prior.device),
                    torch.as_tensor(present).to(head.prior.device),
                )
                .float()
                .cpu()
                .numpy()
            )
        val = split == "val"
        weights, interaction_weight = fit_head_weights(logits[val] - centers, present[val], interaction[val],
                                                       prior[val], labels[val])  # fmt: skip
    elif len(outside.linear_group) < len(model.modalities):
        weights = _stacking_weights(model, logits - centers + outside.shift, present, prior, labels,
                                    np.isin(split, fit_splits), outside.linear_group)  # fmt: skip
    head.modality_weight.copy_(torch.as_tensor(weights, dtype=head.modality_weight.dtype))
    head.interaction_weight.fill_(interaction_weight)
    return {"logit_centers": _by_modality(model, centers), "modality_weights": _by_modality(model, weights),
            "interaction_weight": round(interaction_weight, 4)}  # fmt: skip


def _stacking_weights(model: LateFusionModel, held_out: np.ndarray, present: np.ndarray, prior: np.ndarray,
                      labels: np.ndarray, rows: np.ndarray, linear_group: list[str]) -> np.ndarray:  # fmt: skip
    """Modality weights from out-of-fold centred logits (N, M); the linear branches are one column."""
    columns = [[model.modalities.index(n) for n in linear_group]] if linear_group else []
    columns += [[i] for i, n in enumerate(model.modalities) if n not in linear_group]
    z = np.column_stack([(held_out[:, c] * present[:, c]).sum(axis=1) for c in columns])
    has = np.column_stack([present[:, c].max(axis=1) for c in columns])
    fitted = fit_modality_weights(z[rows], has[rows], prior[rows], labels[rows])
    weights = np.ones(len(model.modalities))
    for column, weight in zip(columns, fitted, strict=True):
        weights[column] = weight
    return weights


def _by_modality(model: LateFusionModel, values: np.ndarray) -> dict[str, float]:
    return {name: round(float(v), 4) for name, v in zip(model.modalities, values, strict=True)}


def _write_predictions(model, cache: FeatureCache, out: Path, settings: TrainSettings, device: str,
                       heldout_shift: np.ndarray, calibration_splits: tuple[str, ...]) -> dict:  # fmt: skip
    """predictions.parquet, calibration.json and the XGBoost baseline; returns the baseline's inner-CV settings.

    The fusion is calibrated on `calibration_splits` with each patient's held-out logit: the logit itself for
    patients the model was not fitted on, the inner out-of-fold logit for those a linear fit saw
    (`heldout_shift`). The held-out logit is also written, for choosing operating thresholds honestly.
    """
    from clinfuse.models.baseline import XGBoostBaseline
    from clinfuse.pipelines.training.baseline_features import BaselineFeatures

    outputs = predict_cohort(model, cache, device=device)
    cohort = cache.cohort
    split = cohort["split"].to_numpy()
    labels = cohort["label"].to_numpy()
    val = split == "val"
    heldout = outputs["fusion_logit"] + heldout_shift
    calibrate = np.isin(split, calibration_splits)
    fusion_calibrator = PlattCalibrator.fit(heldout[calibrate], labels[calibrate])

    features, names = BaselineFeatures(cache, model.embed_dim)(outputs["embeddings"])
    train_rows = split == "train"
    baseline = XGBoostBaseline(names, seed=settings.seed).fit(features[train_rows], labels[train_rows])
    baseline.save(out / run_files.XGBOOST_MODEL)
    xgb_logit = baseline.logit(features)
    xgb_calibrator = PlattCalibrator.fit(xgb_logit[val], labels[val])

    table = cohort[[c for c in ("patient", "split", "label", "sex", "age") if c in cohort]].copy()
    table["fusion_logit"] = outputs["fusion_logit"]
    table["fusion_prob_raw"] = 1.0 / (1.0 + np.exp(-outputs["fusion_logit"]))
    table["fusion_prob"] = fusion_calibrator.probability(outputs["fusion_logit"])
    table["fusion_logit_heldout"] = heldout
    table["fusion_prob_heldout"] = fusion_calibrator.probability(heldout)
    table["xgboost_logit"] = xgb_logit
    table["xgboost_prob_raw"] = 1.0 / (1.0 + np.exp(-xgb_logit))
    table["xgboost_prob"] = xgb_calibrator.probability(xgb_logit)
    for column, name in enumerate(cache.modalities):
        table[f"present_{name}"] = outputs["present"][:, column] > 0
        table[f"single_logit_{name}"] = outputs["single_logit"][:, column]
    table.to_parquet(out / run_files.PREDICTIONS, index=False)
    interval = BootstrapInterval.fit(heldout[calibrate], labels[calibrate], seed=settings.seed)
    fitted_on = "val" if calibration_splits == ("val",) else "+".join(calibration_splits) + " (inner out-of-fold)"
    calibration = {"fusion": fusion_calibrator.to_json(), "xgboost": xgb_calibrator.to_json(),
                   "fusion_interval": interval.to_json(), "fitted_on": fitted_on, "method": "platt"}  # fmt: skip
    (out / run_files.CALIBRATION).write_text(json.dumps(calibration, indent=1))
    return baseline.settings


def _check_cohort(cache: FeatureCache) -> None:
    """What would otherwise fail only after the epochs: a split without both labels, a modality nobody has."""
    counts = cache.cohort.groupby("split")["label"].agg(["sum", "count"])
    for split in ("train", "val"):
        if split not in counts.index or counts.loc[split, "sum"] in (0, counts.loc[split, "count"]):
            raise ClinFuseError(f"the {split} split needs patients of both labels", "enlarge the cohort or re-split")
    train = cache.cohort["split"] == "train"
    for name in cache.modalities:
        if not cache.cohort.loc[train, f"present_{name}"].any():
            raise ClinFuseError(f"no training patient has modality '{name}' (see {cache.path}/ingest_report.json)",
                                "check that the modality's patient ids match the cohort table, or remove the "
                                "modality from cohort.yaml")  # fmt: skip


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


def _encoder_specs(cache: FeatureCache, accelerator: str, chosen: dict[str, str],
                   table_architectures: dict[str, str] | None = None) -> dict[str, EncoderSpec]:  # fmt: skip
    """Each modality's encoder: chosen by modality name, else by kind, else (table-like) selected, else the kind's
    default for the accelerator. A choice naming nothing in the cache or an architecture its kind lacks is an error."""
    unknown = set(chosen) - set(cache.modalities) - set(cache.modalities.values())
    if unknown:
        raise ClinFuseError(f"--encoder names {sorted(unknown)}, which is no modality or kind of this cache",
                            f"use a modality name ({', '.join(cache.modalities)}) or its kind")  # fmt: skip
    dims = modality_dims(cache)
    specs = {}
    for name, kind_name in cache.modalities.items():
        kind = get_kind(kind_name)
        architecture = (chosen.get(name) or chosen.get(kind_name) or (table_architectures or {}).get(name)
                        or kind.default_architectures[accelerator])  # fmt: skip
        if architecture not in kind.architectures:
            raise ClinFuseError(f"modality '{name}' ({kind_name}) has no encoder '{architecture}'",
                                f"use one of {', '.join(kind.architectures)}")  # fmt: skip
        specs[name] = EncoderSpec(kind=kind_name, architecture=architecture, embed_dim=EMBED_DIM, dims=dims[name])
    return specs


def _loggers(out: Path, tracked: TrainingRun | None) -> list[Logger]:
    """CSV in the run folder; the epoch metrics also go to the MLflow run (on rank 0: the others have none)."""
    from pytorch_lightning.loggers import CSVLogger

    loggers: list[Logger] = [CSVLogger(out, name="logs")]
    if tracked is not None:
        loggers.append(tracked.epoch_logger())
    return loggers
