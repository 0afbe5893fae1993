"""Evaluation of a cross-validated run (`clinfuse train --cv`): pooled out-of-fold rows and per-fold spread.

The pooled figures use the first repeat's out-of-fold predictions, where every patient appears once, scored by
the fold model that never saw them; the other repeats enter the per-fold mean and sd. Operating thresholds are
chosen on the fold models' own validation predictions, pooled the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from clinfuse.pipelines.training import run_files

FOLD_METRICS = ("fusion_auroc", "xgboost_auroc", "fusion_auprc", "xgboost_auprc", "fusion_brier", "xgboost_brier")


def is_cross_validated(run: Path) -> bool:
    folder = run / run_files.CROSS_VALIDATION
    return (folder / run_files.OOF_PREDICTIONS).is_file() and (folder / run_files.FOLDS_FILE).is_file()


def pooled_predictions(run: Path) -> pd.DataFrame:
    """The first repeat's out-of-fold rows as split `test` and its fold-validation rows as split `val`."""
    oof = pd.read_parquet(run / run_files.CROSS_VALIDATION / run_files.OOF_PREDICTIONS)
    validation = pd.read_parquet(run / run_files.CROSS_VALIDATION / run_files.FOLD_VALIDATION_PREDICTIONS)
    first = [frame[frame["repeat"] == 0].assign(split=split) for frame, split in ((oof, "test"), (validation, "val"))]
    return pd.concat(first, ignore_index=True)


def fold_summary(run: Path) -> dict:
    """Mean and sd over all K x R folds of each per-fold metric, with the folds themselves."""
    folds = json.loads((run / run_files.CROSS_VALIDATION / run_files.FOLDS_FILE).read_text())
    records = folds["per_fold"]
    summary = {}
    for key in FOLD_METRICS:
        values = np.array([r[key] for r in records if r.get(key) is not None], dtype=float)
        summary[key] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return {"folds": folds["folds"], "repeats": folds["repeats"], "summary": summary, "per_fold": records}


def report_section(cv: dict) -> str:
    """Markdown: how the figures above were obtained, and the spread over folds."""
    lines = [
        "",
        f"## Cross-validation ({cv['folds']} folds x {cv['repeats']} repeats)",
        "",
        "The figures above are pooled out-of-fold predictions of the first repeat: every patient scored once, by "
        "the fold model that did not see them. The deployable model was refitted on all patients with the same "
        "settings. In this report 'test split' means these pooled out-of-fold predictions, and 'validation split' "
        "the fold models' own validation patients, pooled the same way.",
        "",
        "| per fold (mean +- sd) | fusion | XGBoost |",
        "|---|---|---|",
    ]
    for metric in ("auroc", "auprc", "brier"):
        fusion, xgb = cv["summary"][f"fusion_{metric}"], cv["summary"][f"xgboost_{metric}"]
        lines.append(f"| {metric.upper()} | {fusion['mean']:.3f} +- {fusion['sd']:.3f} "
                     f"| {xgb['mean']:.3f} +- {xgb['sd']:.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"
