"""The model card registered with every version: intended use, data, metrics with CIs, calibration,
subgroups, missingness and limitations, written from the run's own evaluation (nothing typed by hand)."""

from __future__ import annotations

from clinfuse.models.decision_metrics import ALERT_METRICS, format_estimate
from clinfuse.models.metrics import describe_ece_noise


def _auroc(entry: dict) -> str:
    value = entry.get("auroc")
    if value is None:
        return "n/a"
    ci = entry.get("auroc_ci")
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def _group_rows(groups: dict) -> list[str]:
    rows = ["| group | n | positives | AUROC |", "|---|---:|---:|---:|"]
    for name, entry in groups.items():
        auroc = "n/a (one label)" if entry.get("auroc") is None else f"{entry['auroc']:.3f}"
        rows.append(f"| {name} | {entry['n']} | {entry.get('positives', '')} | {auroc} |")
    return rows


def render_model_card(metrics: dict, provenance: dict, modalities: dict, ingest_report: dict) -> str:
    cohort = ingest_report["cohort"]
    fusion, xgb = metrics["fusion"], metrics["xgboost"]
    lines = [
        f"# Model card: ClinFuse late-fusion risk model (cohort '{provenance.get('cohort_name')}')",
        "",
        "## Intended use",
        "Decision support for clinicians: a calibrated probability of the cohort's outcome with per-modality",
        "explanations. Not a diagnostic device; a clinician reviews every result. Valid only for patients like the",
        "training cohort, with data prepared the same way (the bundled alignment is applied, never refitted).",
        "",
        "## Data",
        f"- Cohort: {cohort['patients']} patients, {cohort['positives']} positive; splits "
        + ", ".join(f"{k} {v['n']} ({v['positives']} pos.)" for k, v in cohort["splits"].items())
        + ".",
        "- Modalities: "
        + ", ".join(f"{name} ({entry['kind']})" for name, entry in modalities.items())
        + "; presence patterns: "
        + ", ".join(f"{k} {v}" for k, v in ingest_report.get("presence_patterns", {}).items())
        + ".",
        f"- Cohort config hash `{provenance['cohort_config_hash']}`; code commit `{provenance['git_commit']}`.",
        "",
        f"## Performance on the held-out test split (n={metrics['n_test']}, prevalence {metrics['prevalence']:.3f})",
        f"95% bootstrap confidence intervals, {metrics.get('bootstrap_resamples', 1000)} resamples.",
        "",
        "| model | AUROC | AUPRC | Brier | ECE |",
        "|---|---|---|---:|---:|",
        f"| late fusion | {_auroc(fusion)} | {fusion['auprc']:.3f} | {fusion['brier']:.3f} | {fusion['ece']:.3f} |",
        f"| XGBoost baseline | {_auroc(xgb)} | {xgb['auprc']:.3f} | {xgb['brier']:.3f} | {xgb['ece']:.3f} |",
        "",
        "Single modality (same fusion model, other modalities masked):",
        "",
        "| modality | AUROC | patients with it |",
        "|---|---|---:|",
        *[f"| {n} | {_auroc(e)} | {e.get('n_present', '')} |" for n, e in metrics["single_modality"].items()],
        "",
        "## Calibration",
        f"{metrics.get('calibration', 'Platt scaling on the validation split')}; expected calibration error "
        f"{fusion['ece']:.3f} (uncalibrated {fusion.get('ece_uncalibrated', float('nan')):.3f}). Each score carries",
        "a 95% interval from Platt calibrators refitted on bootstrap resamples of the validation split.",
        *_ece_noise(fusion, metrics["n_test"]),
        *_calibration_slope(fusion),
        *_operating_points(metrics),
        "",
        "## Subgroups",
        *_group_rows(metrics["subgroups"]),
        "",
        "## By missing modalities",
        *_group_rows(metrics["by_missingness"]),
        "",
        "## Limitations",
        "- Small subgroups and rare missingness patterns have wide intervals; the table above shows their size.",
        "- The risk interval covers calibration uncertainty, not the encoders' weight uncertainty.",
        "- Performance may drop on scanners, assays or coding practices unlike the training data; monitor it.",
    ]
    unmet = [name for name, target in metrics.get("targets", {}).items() if not target.get("met")]
    if unmet:
        lines.append(f"- Project quality targets not met by this version: {', '.join(unmet)} (see metrics.json).")
    lines += ["", f"Trained {provenance['trained_at']} with torch {provenance['versions'].get('torch')}."]
    return "\n".join(lines) + "\n"


def _ece_noise(fusion: dict, n_test: int) -> list[str]:
    """The ECE's sampling noise at the test size, where metrics.json has it."""
    noise = fusion.get("ece_if_perfectly_calibrated")
    return [describe_ece_noise(fusion["ece"], noise, n_test)] if noise else []


def _calibration_slope(fusion: dict) -> list[str]:
    """Calibration intercept and slope (logistic recalibration on test), where metrics.json has them."""
    if "calibration_slope" not in fusion:
        return []
    intercept = format_estimate(fusion["calibration_intercept"], fusion["calibration_intercept_ci"])
    slope = format_estimate(fusion["calibration_slope"], fusion["calibration_slope_ci"])
    return [f"Calibration intercept {intercept} (ideal 0; above 0: risks too low on average), calibration slope "
            f"{slope} (ideal 1; below 1: risks too extreme), on the test split."]  # fmt: skip


def _operating_points(metrics: dict) -> list[str]:
    """The late-fusion model's operating points on the test split with 95% CIs, where metrics.json has them."""
    points = metrics["fusion"].get("operating_points")
    if not points:
        return []
    source = metrics.get("operating_thresholds_from", "validation")
    rows = ["", "## Operating points (late fusion, test split)",
            f"An alert is raised at a calibrated risk at or above the threshold; thresholds for a target sensitivity "
            f"were chosen on the {source} split.", "",
            "| rule | threshold | sensitivity | specificity | PPV | NPV | alerts per 100 |",
            "|---|---:|---|---|---|---|---|"]  # fmt: skip
    for point in points:
        cells = [format_estimate(point[m], point[f"{m}_ci"], 1 if m == "alerts_per_100" else 3)
                 for m in ALERT_METRICS]  # fmt: skip
        rows.append(f"| {point['rule']} | {point['threshold']:.3f} | {' | '.join(cells)} |")
    return rows
