"""The clinical decision figures of an evaluation (TRIPOD+AI): operating points, calibration slope and intercept,
the decision curve; their metrics.json entries and their report section.

Operating points at a target sensitivity take their threshold from the validation split's calibrated risks and
apply it unchanged to test: choosing it on test would flatter the test sensitivity. The test split is used only
when the predictions hold no validation split with both outcomes, and the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from clinfuse.models import decision_metrics
from clinfuse.models.decision_metrics import format_estimate
from clinfuse.platform.errors import ClinFuseError

DEFAULT_THRESHOLDS = (0.1, 0.2, 0.3, 0.5)
DEFAULT_TARGET_SENSITIVITIES = (0.8, 0.9)
DECISION_CURVE_THRESHOLDS = tuple(round(0.01 * i, 2) for i in range(1, 51))  # 0.01 .. 0.50
REPORTED_NET_BENEFIT_AT = (0.05, 0.1, 0.2, 0.3, 0.5)
PROBABILITY_COLUMNS = {"fusion": "fusion_prob", "xgboost": "xgboost_prob"}  # calibrated risks


def parse_fractions(text: str, option: str) -> tuple[float, ...]:
    """'0.1,0.2' -> (0.1, 0.2) for a CLI option, checked as `check_fractions` does; anything else is one error
    that shows a valid value."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values:
        raise ClinFuseError(
            f"{option} '{text}' is not a comma-separated list of numbers", f"write e.g. {option} 0.1,0.2"
        )
    return check_fractions(values, option)


def check_fractions(values: Sequence[float], option: str) -> tuple[float, ...]:
    """Risk thresholds and target sensitivities must lie strictly between 0 and 1."""
    bad = [v for v in values if not 0.0 < v < 1.0]
    if bad:
        raise ClinFuseError(
            f"{option} {', '.join(f'{v:g}' for v in bad)} must be strictly between 0 and 1",
            f"give fractions such as {option} 0.1,0.2, not percentages",
        )
    return tuple(sorted(set(values)))


def clinical_figures(
    predictions: pd.DataFrame,
    resamples: int,
    seed: int,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    target_sensitivities: Sequence[float] = DEFAULT_TARGET_SENSITIVITIES,
) -> dict:
    """metrics.json entries: per model (merged into result[model]) the calibration intercept and slope with CIs
    and the operating points; `decision_curve`; `operating_thresholds_from` (which split gave the thresholds)."""
    thresholds = check_fractions(thresholds, "--thresholds")
    target_sensitivities = check_fractions(target_sensitivities, "--target-sensitivity")
    test = predictions[predictions["split"] == "test"]
    validation = predictions[predictions["split"] == "val"]
    source = validation if validation["label"].nunique() == 2 else test
    labels = test["label"].to_numpy()
    figures: dict = {
        "operating_thresholds_from": "validation" if source is validation else "test",
        "operating_thresholds_n": int(len(source)),
        "operating_thresholds_events": int(source["label"].sum()),
    }
    for model, column in PROBABILITY_COLUMNS.items():
        probabilities = test[column].to_numpy()
        calibration = decision_metrics.calibration_intercept_and_slope(labels, probabilities)
        intervals = decision_metrics.bootstrap_percentiles(
            labels,
            probabilities,
            decision_metrics.calibration_intercept_and_slope,
            resamples,
            seed,
            batched=decision_metrics.calibration_batched,
        )
        figures[model] = {
            "calibration_intercept": _number(calibration[0]),
            "calibration_intercept_ci": _interval(intervals[0]),
            "calibration_slope": _number(calibration[1]),
            "calibration_slope_ci": _interval(intervals[1]),
            "operating_points": _operating_points(
                labels,
                probabilities,
                source["label"].to_numpy(),
                source[column].to_numpy(),
                thresholds,
                target_sensitivities,
                resamples,
                seed,
            ),
        }
    figures["decision_curve"] = _decision_curve(labels, {m: test[c].to_numpy() for m, c in PROBABILITY_COLUMNS.items()})
    return figures


def _operating_points(
    labels: np.ndarray,
    probabilities: np.ndarray,
    source_labels: np.ndarray,
    source_probabilities: np.ndarray,
    thresholds: tuple[float, ...],
    targets: tuple[float, ...],
    resamples: int,
    seed: int,
) -> list[dict]:
    rules = [{"kind": "risk_threshold", "rule": f"risk >= {t:g}", "threshold": t} for t in thresholds]
    for target in targets:
        threshold = decision_metrics.threshold_for_sensitivity(source_labels, source_probabilities, target)
        if threshold is None:
            continue  # neither split has both outcomes: no threshold can be chosen
        found = decision_metrics.alert_statistics(source_labels, source_probabilities, [threshold])[0, 0]
        rules.append(
            {
                "kind": "target_sensitivity",
                "rule": f"target sensitivity {target:g}",
                "threshold": threshold,
                "target_sensitivity": target,
                "sensitivity_where_chosen": float(found),
            }
        )
    chosen = [rule["threshold"] for rule in rules]
    values = decision_metrics.alert_statistics(labels, probabilities, chosen)
    intervals = decision_metrics.bootstrap_percentiles(
        labels,
        probabilities,
        lambda y, p: decision_metrics.alert_statistics(y, p, chosen),
        resamples,
        seed,
        batched=lambda y, p, counts: decision_metrics.alert_statistics_batched(y, p, chosen, counts),
    ).reshape(len(chosen), len(decision_metrics.ALERT_METRICS), 2)
    for rule, row, row_intervals in zip(rules, values, intervals, strict=True):
        for name, value, interval in zip(decision_metrics.ALERT_METRICS, row, row_intervals, strict=True):
            rule[name], rule[f"{name}_ci"] = _number(value), _interval(interval)
    return rules


def _decision_curve(labels: np.ndarray, probabilities: dict[str, np.ndarray]) -> dict:
    thresholds = np.array(DECISION_CURVE_THRESHOLDS)
    net_benefit = {m: decision_metrics.net_benefit(labels, p, thresholds) for m, p in probabilities.items()}
    net_benefit["treat_all"] = decision_metrics.net_benefit_treat_all(float(np.mean(labels)), thresholds)
    net_benefit["treat_none"] = np.zeros_like(thresholds)
    rounded = {name: [round(float(v), 6) for v in values] for name, values in net_benefit.items()}
    return {"thresholds": list(DECISION_CURVE_THRESHOLDS), "net_benefit": rounded}


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _interval(interval: np.ndarray) -> list[float] | None:
    return None if np.isnan(interval).any() else [float(interval[0]), float(interval[1])]


def report_section(result: dict) -> str:
    """The report's 'Clinical decision figures' section, from the metrics.json entries above."""
    source = result["operating_thresholds_from"]
    if source == "validation":
        where = (
            f"on the validation split ({result['operating_thresholds_n']} patients, "
            f"{result['operating_thresholds_events']} events) and applied unchanged to the test split, so the test "
            "sensitivity can fall below the target"
        )
    else:
        where = (
            "on the test split itself (the predictions hold no validation split with both outcomes), so the test "
            "sensitivity there is optimistic"
        )
    lines = [
        "",
        "## Clinical decision figures",
        "",
        f"An alert is raised when the calibrated risk is at or above the threshold. Thresholds for a target "
        f"sensitivity were found {where}. 95% CIs: percentile bootstrap over test patients "
        f"({result['bootstrap_resamples']} resamples, the same draws as above), thresholds held fixed.",
        "",
        "### Operating points (test split)",
        "",
        "| model | rule | threshold | sensitivity | specificity | PPV | NPV | alerts per 100 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model in PROBABILITY_COLUMNS:
        for point in result[model]["operating_points"]:
            cells = [
                format_estimate(point[m], point[f"{m}_ci"], 1 if m == "alerts_per_100" else 3)
                for m in decision_metrics.ALERT_METRICS
            ]
            lines.append(f"| {model} | {point['rule']} | {point['threshold']:.3f} | {' | '.join(cells)} |")
    lines += [
        "",
        "### Calibration slope and intercept (test split)",
        "",
        "Logistic recalibration of the logit of the calibrated risk p. Intercept (calibration-in-the-large): "
        "a in logit P(y) = a + logit(p), ideal 0, above 0 means risks too low on average. Slope: b in "
        "logit P(y) = a + b·logit(p), ideal 1, below 1 means risks too extreme.",
        "",
        "| model | ECE | calibration intercept | calibration slope |",
        "| --- | --- | --- | --- |",
    ]
    for model in PROBABILITY_COLUMNS:
        r = result[model]
        intercept = format_estimate(r["calibration_intercept"], r["calibration_intercept_ci"])
        slope = format_estimate(r["calibration_slope"], r["calibration_slope_ci"])
        lines.append(f"| {model} | {r['ece']:.3f} | {intercept} | {slope} |")
    lines += [
        "",
        "### Calibration by missingness pattern and subgroup (fusion)",
        "",
        f"A slope is estimated only with at least {decision_metrics.MIN_EVENTS_FOR_SLOPE} events and as many "
        "non-events; the intercept needs both outcomes.",
        "",
        "| group | n | events | observed risk | mean predicted risk | intercept | slope |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in ("by_missingness", "subgroups"):
        for group, r in result[key].items():
            slope = r.get("calibration_slope_note") or format_estimate(r["calibration_slope"], None)
            cells = [
                format_estimate(r[k], None) for k in ("observed_risk", "mean_predicted_risk", "calibration_intercept")
            ]
            lines.append(f"| {group} | {r['n']} | {r['positives']} | {' | '.join(cells)} | {slope} |")
    curve = result["decision_curve"]
    names = list(curve["net_benefit"])
    lines += [
        "",
        "### Decision curve (test split)",
        "",
        "Net benefit at threshold t = TP/n − FP/n · t/(1−t) (Vickers & Elkin 2006): true alerts per patient, "
        "less false alerts weighted by the odds of t. A model is useful at t where it beats both treat-all and "
        "treat-none.",
        "",
        "| threshold | " + " | ".join(n.replace("_", " ") for n in names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for t in REPORTED_NET_BENEFIT_AT:
        index = curve["thresholds"].index(t)
        lines.append(f"| {t:g} | " + " | ".join(f"{curve['net_benefit'][n][index]:.3f}" for n in names) + " |")
    lines += ["", "![decision curve](decision_curve.png)", "", "![ROC and precision-recall curves](roc_pr.png)", ""]
    return "\n".join(lines)
