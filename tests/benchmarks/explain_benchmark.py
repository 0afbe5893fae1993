"""Explanation cost benchmark: exact modality Shapley vs. plain scoring vs. shap's KernelExplainer.

What one run measures (every figure printed is measured in that run, on the same patients, on one CPU core:
`torch.set_num_threads(1)` and, through threadpoolctl, one BLAS thread for numpy/shap):

(1) Plain scoring, per patient (a batch of one patient at a time):
    - full forward: `model.encode(batch)` then `model.head(embeddings, logits, present)`; this is the honest
      "plain scoring" baseline (a scoring service has to run the encoders);
    - head only: `model.head(...)` on that patient's already-cached embeddings and modality logits.
    Neither baseline includes calibration or the conversion to numpy (both are part of the Shapley figure), so
    the ratios below are conservative (they err against ClinFuse's method).
(2) Exact modality Shapley, per patient: `modality_shapley(head, embeddings[i], logits[i], present[i], names,
    calibrator)` on the already-computed embeddings (2^k head evaluations in one batch + calibration + the
    Shapley sums). Its cost is reported relative to the full forward (the product goal: <= 1.5x of plain
    scoring) and relative to head-only; scoring + explaining vs. scoring alone is printed as well.
(3) shap's KernelExplainer on the same game, per patient: f(Z), Z an (n, M) 0/1 matrix of kept modalities,
    returns the calibrated fusion logit of the head with mask = Z * present; background = the all-zero row
    (every modality masked); explains the all-ones row with nsamples='auto' (with M <= 3 every coalition is
    enumerated, so its values should match the exact ones). The explainer is built per patient (f depends on
    the patient) and its construction is timed. Reported: ratio KernelExplainer / exact Shapley on the same
    patients, and the max |difference| between the two attributions (absent modalities count as 0 exactly).

Noise handling: each method is timed over all its patients in each of `--repeats` rounds, the order of the
methods rotating from round to round; ratios are formed within a round (paired) and the median over rounds is
reported, with the min-max range across rounds. Inputs are loaded and collated before any timing; a warm-up
pass runs every method first. Data loading is not timed.

Run from the repository root on a training run folder written by `clinfuse train`:

    .venv/bin/python tests/benchmarks/explain_benchmark.py --run RUN [--patients 100] [--kernel-patients 20]
        [--split test] [--repeats 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

SHAPLEY_GOAL = 1.5  # exact modality Shapley at most 1.5x the cost of plain scoring (the full forward)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="training run folder written by `clinfuse train`")
    parser.add_argument("--patients", type=int, default=100, help="patients for scoring and exact Shapley")
    parser.add_argument("--kernel-patients", type=int, default=20,
                        help="first patients (of --patients) also explained by KernelExplainer")  # fmt: skip
    parser.add_argument("--split", default="test", help="cohort split to draw patients from ('all' for every one)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per method (median reported)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.patients < 1 or args.kernel_patients < 0 or args.repeats < 1:
        parser.error("--patients and --repeats must be >= 1, --kernel-patients >= 0")
    return args


def _machine_header(run: Path) -> list[str]:
    import shap

    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return [
        f"host        {platform.node()}  {platform.platform()}",
        f"cpu         {platform.processor() or platform.machine()}  logical cores: {os.cpu_count()}  "
        f"load avg (1/5/15 min): {load}",
        f"python      {sys.version.split()[0]}  torch {torch.__version__}  numpy {np.__version__}  "
        f"shap {shap.__version__}",
        f"device      cpu (torch threads: {torch.get_num_threads()}, BLAS threads limited to 1)",
        f"run         {run}",
    ]


def _load(run: Path, split: str | None, n_patients: int) -> tuple:
    """Model, calibrator and the first `n_patients` patients of the split, each collated as a batch of one."""
    from clinfuse.models.calibration import PlattCalibrator
    from clinfuse.pipelines.data import CacheDataset
    from clinfuse.pipelines.training.model_io import load_model
    from clinfuse.platform.cache import FeatureCache
    from torch.utils.data import default_collate

    model = load_model(run)
    cache = FeatureCache(json.loads((run / "run.json").read_text())["cache"])
    calibrator = PlattCalibrator.from_json(json.loads((run / "calibration.json").read_text())["fusion"])
    dataset = CacheDataset(cache, split)
    count = min(n_patients, len(dataset))
    batches = [default_collate([dataset[i]]) for i in range(count)]
    return model, calibrator, batches, len(dataset)


class Timings:
    """Seconds per round for each method, over that method's patients."""

    def __init__(self) -> None:
        self.rounds: dict[str, list[float]] = {}

    def add(self, name: str, seconds: float) -> None:
        self.rounds.setdefault(name, []).append(seconds)

    def per_patient_us(self, name: str, n: int) -> tuple[float, float, float]:
        values = [1e6 * s / n for s in self.rounds[name]]
        return statistics.median(values), min(values), max(values)

    def ratio(self, num: str, n_num: int, den: str, n_den: int) -> tuple[float, float, float]:
        """Paired per-round ratio of per-patient costs: median, min, max over rounds."""
        values = [(a / n_num) / (b / n_den) for a, b in zip(self.rounds[num], self.rounds[den], strict=True)]
        return statistics.median(values), min(values), max(values)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")

    import shap
    from clinfuse.models.explain.modality_shapley import modality_shapley
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    header = _machine_header(args.run)
    model, calibrator, batches, split_size = _load(args.run, None if args.split == "all" else args.split, args.patients)
    names = list(model.modalities)
    n = len(batches)
    k_kernel = min(args.kernel_patients, n)
    head = model.head

    # Cached embeddings and modality logits of every patient (the input of the head-only and Shapley paths).
    with torch.no_grad():
        encoded = [model.encode(batch) for batch in batches]
    presents = [batch["present"] for batch in batches]
    emb_np = [e[0].numpy() for e, _ in encoded]
    logit_np = [g[0].numpy() for _, g in encoded]
    present_np = [p[0].numpy() for p in presents]

    def full_forward(patients: range) -> None:
        with torch.no_grad():
            for i in patients:
                embeddings, logits = model.encode(batches[i])
                head(embeddings, logits, batches[i]["present"])

    def head_only(patients: range) -> None:
        with torch.no_grad():
            for i in patients:
                head(encoded[i][0], encoded[i][1], presents[i])

    exact: list = [None] * n

    def exact_shapley(patients: range) -> None:
        for i in patients:
            exact[i] = modality_shapley(head, emb_np[i], logit_np[i], present_np[i], names, calibrator)

    kernel_values: list = [None] * n
    kernel_base: list = [None] * n
    background = np.zeros((1, len(names)))
    explained = np.ones((1, len(names)))

    def kernel_model(i: int) -> Callable[[np.ndarray], np.ndarray]:
        embeddings = torch.as_tensor(emb_np[i])
        logits = torch.as_tensor(logit_np[i])
        present = torch.as_tensor(present_np[i])

        def f(z: np.ndarray) -> np.ndarray:
            rows = len(z)
            mask = torch.as_tensor(np.asarray(z, np.float32)) * present
            with torch.no_grad():
                raw = head(embeddings.expand(rows, *embeddings.shape), logits.expand(rows, *logits.shape), mask)
            return calibrator.logit(raw.numpy().astype(np.float64))

        return f

    def kernel_shap(patients: range) -> None:
        for i in patients:
            explainer = shap.KernelExplainer(kernel_model(i), background)
            values = explainer.shap_values(explained, nsamples="auto", silent=True)
            kernel_values[i] = np.asarray(values, float).reshape(-1)[: len(names)]
            kernel_base[i] = float(np.asarray(explainer.expected_value).reshape(-1)[0])

    methods: list[tuple[str, Callable[[range], None], int]] = [
        ("full_forward", full_forward, n),
        ("head_only", head_only, n),
        ("exact_shapley", exact_shapley, n),
    ]
    if k_kernel:
        methods += [("exact_shapley_kernel_subset", exact_shapley, k_kernel), ("kernel_shap", kernel_shap, k_kernel)]

    # Warm-up: every method once on a few patients (allocators, shap's first-call imports, lazy init).
    for _, fn, count in methods:
        fn(range(min(count, 5)))

    timings = Timings()
    for r in range(args.repeats):
        shift = r % len(methods)
        for name, fn, count in methods[shift:] + methods[:shift]:
            start = time.perf_counter()
            fn(range(count))
            timings.add(name, time.perf_counter() - start)

    # Correctness checks on the last round's results.
    with torch.no_grad():
        forward_logit = np.array(
            [float(calibrator.logit(head(e, g, p).numpy().astype(np.float64))[0]) for (e, g), p in
             zip(encoded, presents, strict=True)]
        )  # fmt: skip
    prediction = np.array([s.logit_prediction for s in exact])
    efficiency = np.array([s.logit_base + sum(s.logit_values.values()) - s.logit_prediction for s in exact])
    exact_matrix = np.array([[s.logit_values.get(m, 0.0) for m in names] for s in exact])
    if k_kernel:
        kernel_matrix = np.array(kernel_values[:k_kernel])
        kernel_diff = float(np.max(np.abs(kernel_matrix - exact_matrix[:k_kernel])))
        base_diff = float(np.max(np.abs(np.array(kernel_base[:k_kernel]) - [s.logit_base for s in exact[:k_kernel]])))
    present_counts = np.bincount([int(p.sum()) for p in present_np], minlength=len(names) + 1)

    # Report.
    lines = ["", "== Explanation cost benchmark (per patient, one CPU core) ==", *header]
    lines.append(
        f"patients    {n} of split '{args.split}' ({split_size} there); KernelExplainer on the first {k_kernel}; "
        f"{args.repeats} timed rounds after a warm-up"
    )
    lines.append(f"modalities  {names} (M={len(names)})")
    lines.append(
        "present     " + ", ".join(f"{k} modalities: {c}" for k, c in enumerate(present_counts) if c)
        + " patients (exact Shapley evaluates 2^k subsets)"
    )  # fmt: skip
    lines.append("")
    lines.append(f"{'method':<52}{'patients':>9}{'median us/patient':>19}{'range (rounds)':>22}")
    labels = {
        "full_forward": "(1a) plain scoring: full forward (encode + head)",
        "head_only": "(1b) plain scoring: head only (cached embeddings)",
        "exact_shapley": "(2)  exact modality Shapley (cached embeddings)",
        "exact_shapley_kernel_subset": "(2') exact modality Shapley, KernelExplainer subset",
        "kernel_shap": "(3)  shap KernelExplainer, nsamples='auto'",
    }
    per_patient: dict[str, dict] = {}
    for name, _, count in methods:
        med, lo, hi = timings.per_patient_us(name, count)
        per_patient[name] = {"patients": count, "median_us": med, "min_us": lo, "max_us": hi}
        lines.append(f"{labels[name]:<52}{count:>9}{med:>19.1f}{f'{lo:.1f} - {hi:.1f}':>22}")

    ratios: dict[str, dict] = {}

    def add_ratio(key: str, label: str, value: tuple[float, float, float], goal: str = "") -> None:
        med, lo, hi = value
        ratios[key] = {"median": med, "min": lo, "max": hi}
        lines.append(f"{label:<60}{med:>10.2f}x{f'{lo:.2f} - {hi:.2f}':>16}  {goal}")

    lines.append("")
    lines.append(f"{'ratio (paired within each round)':<60}{'median':>11}{'range (rounds)':>16}")
    vs_forward = timings.ratio("exact_shapley", n, "full_forward", n)
    verdict = "PASS" if vs_forward[0] <= SHAPLEY_GOAL else "FAIL"
    add_ratio("shapley_vs_full_forward", "exact Shapley / plain scoring (full forward)", vs_forward,
              f"goal <= {SHAPLEY_GOAL}x: {verdict}")  # fmt: skip
    add_ratio("shapley_vs_head_only", "exact Shapley / head only", timings.ratio("exact_shapley", n, "head_only", n))
    end_to_end = [
        (f + s) / f for f, s in zip(timings.rounds["full_forward"], timings.rounds["exact_shapley"], strict=True)
    ]
    e2e = (statistics.median(end_to_end), min(end_to_end), max(end_to_end))
    verdict_e2e = "PASS" if e2e[0] <= SHAPLEY_GOAL else "FAIL"
    add_ratio("score_and_explain_vs_score", "(full forward + exact Shapley) / full forward", e2e,
              f"if read as total cost <= {SHAPLEY_GOAL}x: {verdict_e2e}")  # fmt: skip
    add_ratio("full_forward_vs_head_only", "full forward / head only",
              timings.ratio("full_forward", n, "head_only", n))  # fmt: skip
    if k_kernel:
        add_ratio("kernel_vs_exact", "KernelExplainer / exact Shapley (same patients)",
                  timings.ratio("kernel_shap", k_kernel, "exact_shapley_kernel_subset", k_kernel))  # fmt: skip
        add_ratio("kernel_vs_full_forward", "KernelExplainer / plain scoring (full forward)",
                  timings.ratio("kernel_shap", k_kernel, "full_forward", n))  # fmt: skip

    lines.append("")
    lines.append("checks (calibrated fusion logit)")
    prediction_diff = float(np.max(np.abs(prediction - forward_logit)))
    efficiency_gap = float(np.max(np.abs(efficiency)))
    checks = {"max_abs_exact_prediction_vs_forward": prediction_diff, "max_abs_efficiency_gap": efficiency_gap}
    lines.append(f"  exact Shapley v(all present) vs. forward pass   max |diff| = {prediction_diff:.2e}")
    lines.append(f"  efficiency: base + sum(values) - prediction     max |gap|  = {efficiency_gap:.2e}")
    if k_kernel:
        checks["max_abs_kernel_vs_exact_values"] = kernel_diff
        checks["max_abs_kernel_vs_exact_base"] = base_diff
        agree = "agree" if kernel_diff < 1e-4 else "DISAGREE"
        lines.append(f"  KernelExplainer vs exact Shapley values         max |diff| = {kernel_diff:.2e}  ({agree})")
        lines.append(f"  KernelExplainer expected_value vs exact base    max |diff| = {base_diff:.2e}")
    print("\n".join(lines))

    if args.json:
        payload = {"header": header, "patients": n, "kernel_patients": k_kernel, "split": args.split,
                   "repeats": args.repeats, "modalities": names, "per_patient": per_patient, "ratios": ratios,
                   "checks": checks, "goal": SHAPLEY_GOAL}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
