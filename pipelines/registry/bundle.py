"""Everything scoring and the dashboard need from a trained run, in one self-contained folder.

A bundle holds the fusion weights and spec, calibration (with the risk-interval calibrators), the XGBoost
baseline, SHAP backgrounds, evaluation results, the frozen feature alignment of every modality (so a new
cohort is ingested exactly as the training one was, never refitted), the modalities' preprocessing config,
provenance (git commit, cohort config hash) and a model card, all listed in a sha256 manifest.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from clinfuse.pipelines.registry.manifest import sha256_file, write_manifest
from clinfuse.pipelines.registry.model_card import render_model_card
from clinfuse.pipelines.registry.model_folder import open_model
from clinfuse.pipelines.training import run_files
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.ingest.fingerprint import combine
from clinfuse.platform.kinds import get_kind

MODALITIES_FILE = "modalities.json"
PROVENANCE_FILE = "provenance.json"
MODEL_CARD_FILE = "model_card.md"
ALIGNMENTS_DIR = "alignments"
RUN_FILES = (
    run_files.MODEL_WEIGHTS,
    run_files.MODEL_SPEC,
    run_files.CALIBRATION,
    run_files.XGBOOST_MODEL,
    run_files.EXPLAIN_BACKGROUND,
    run_files.METRICS,
    run_files.REPORT,
    run_files.CALIBRATION_PLOT,
    run_files.ROC_PR_PLOT,
    run_files.DECISION_CURVE_PLOT,
)


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest_sha256: str
    provenance: dict


def build_bundle(run: Path, dest: Path) -> Bundle:
    """Assemble the bundle of an evaluated run into the empty folder `dest`."""
    verified = open_model(run)
    if verified.kind != "run":
        raise ClinFuseError(f"{run} is a registered bundle, not a training run", "register the run it was built from")
    if not verified.evaluated:
        raise ClinFuseError(f"run {run} has not been evaluated", f"run `clinfuse evaluate {run}` first")
    info = json.loads((run / run_files.RUN_INFO).read_text())
    cache = FeatureCache(info["cache"])
    if cache.manifest["fingerprints"] != info["cache_fingerprints"]:
        raise ClinFuseError(
            f"the feature cache {cache.path} changed since run {run} was trained",
            "retrain on the current cache, or re-ingest the training cohort unchanged",
        )
    dest.mkdir(parents=True)
    for name in RUN_FILES:
        shutil.copy2(run / name, dest / name)
        if sha256_file(dest / name) != verified.files[name]:
            raise ClinFuseError(f"run {run}: {name} changed while it was being registered", "register it again")
    (dest / ALIGNMENTS_DIR).mkdir()
    modalities = {}
    for name, entry in cache.manifest["modalities"].items():
        site = get_kind(entry["kind"]).config_model.site_field_names()  # the scoring site sets these itself
        config = {k: v for k, v in entry["config"].items() if k not in site}
        modalities[name] = {"kind": entry["kind"], "config": config}
        alignment = cache.modality_dir(name) / "alignment.json"
        if alignment.is_file():
            shutil.copy2(alignment, dest / ALIGNMENTS_DIR / f"{name}.json")
    (dest / MODALITIES_FILE).write_text(json.dumps(modalities, indent=1))
    metrics = json.loads((run / run_files.METRICS).read_text())
    provenance = {
        "git_commit": git_commit(),
        "cohort_name": info.get("cohort_name"),
        "cohort_config_hash": combine(info["cache_fingerprints"]["cohort"], info["cache_fingerprints"]["modalities"]),
        "trained_at": pd.Timestamp((run / run_files.MODEL_WEIGHTS).stat().st_mtime, unit="s", tz="UTC").isoformat(
            timespec="seconds"
        ),
        "settings": info["settings"],
        "versions": info["versions"],
        "best_epoch_val_auroc": info.get("best_epoch_val_auroc"),
        "ingest_report": cache.report["cohort"],
    }
    (dest / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1))
    (dest / MODEL_CARD_FILE).write_text(render_model_card(metrics, provenance, modalities, cache.report))
    return Bundle(dest, write_manifest(dest), provenance)


def git_commit() -> str:
    """The commit of the code that registers the model ('+dirty' with uncommitted changes), else 'unknown'."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                                capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if status.stdout.strip() else "")
