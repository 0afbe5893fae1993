"""Real-cohort benchmark: ClinFuse against simple strong baselines, 5-fold cross-validated, on public cohorts.

For each cohort of `real_cohorts.py` (survset datasets turned into "event within a horizon", two table
modalities each):

1. the cohort folder is written under WORK/<cohort>/cohort (cohort.csv with the benchmark's stratified folds:
   StratifiedKFold, shuffled, --seed);
2. ClinFuse runs on every fold as a user would run it: `clinfuse ingest` then `clinfuse train` on a copy of the
   cohort whose split column holds test = the fold, val = a stratified 15% of the rest, train = the remainder
   (WORK/<cohort>/cohort/folds/fold<k>/), and the run's predictions.parquet gives the test patients'
   calibrated fusion_prob and xgboost_prob. Patients are pseudonymised there; the subprocesses get a fixed
   CLINFUSE_PSEUDONYM_KEY, so the benchmark recomputes each pseudonym to map rows back;
3. the baselines of `real_cohort_baselines.py` run on the same folds from the same raw features;
4. one table: per cohort and method, pooled out-of-fold AUROC, AUPRC and Brier score, the sd of the per-fold
   AUROC, and wall time. ClinFuse's wall time is the sum of its commands over the folds; its last column splits
   one fold's average into ingest and train, and train into start-up (interpreter, imports, cache, screening:
   process start to Lightning's first log file), fit (the epochs: to Lightning's last write of metrics.csv)
   and after-fit (best checkpoint, calibration, XGBoost, explanation background). These split points are file
   modification times of the run folder, so they are approximate (to the file system's clock resolution).

Results are also written to WORK/results.json.

Run from the repository root (pip install 'survset>=0.2.11,<0.3' comes with the dev extra):

    .venv/bin/python tests/benchmarks/real_cohort_benchmark.py [--cohorts nki70,support2,ovarian,gse3143]
        [--folds 5] [--seed 0] [--work /tmp/clinfuse-real-bench] [--max-epochs N | --max-epochs support2=8]
        [--clinfuse-train-args "--accelerator cpu"] [--clinfuse .venv/bin/clinfuse] [--skip-clinfuse]
        [--clinfuse-cv]

With --clinfuse-cv, ClinFuse runs as a user of `clinfuse train --cv` would: one ingest, one training command
that trains the folds and the refit; the baselines then use ClinFuse's own folds (read back from
RUN/cv/oof_predictions.parquet), so the comparison is still fold for fold.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules when run as a script

import real_cohort_baselines as baselines  # noqa: E402
import real_cohorts  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WORK = Path("/tmp/clinfuse-real-bench")
BENCHMARK_KEY = "clinfuse-real-cohort-benchmark-key-0123456789abcdef"  # test key: public cohorts only
DEFAULT_COHORTS = ("nki70", "support2", "ovarian", "gse3143")


@dataclass
class ClinFuseFold:
    """One fold's ClinFuse predictions for the test patients (source ids) and where its time went."""

    predictions: pd.DataFrame  # index patient_id; columns fusion_prob, xgboost_prob
    timings: dict[str, float] = field(default_factory=dict)


def _run(command: list[str], env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as handle:
        result = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise RuntimeError(f"{shlex.join(command)} failed ({result.returncode}); log {log}:\n{tail}")
    return time.perf_counter() - started


def _mtime(folder: Path, pattern: str) -> float:
    found = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1].stat().st_mtime if found else float("nan")


def run_clinfuse_fold(clinfuse: Path, fold_config: Path, cache: Path, run: Path, env: dict[str, str],
                      train_args: list[str]) -> ClinFuseFold:  # fmt: skip
    """`clinfuse ingest` + `clinfuse train` on one fold's cohort; the test split's probabilities by source id.

    To be replaced by one `clinfuse train --cv 5` per cohort (RUN/cv/oof_predictions.parquet: patient, label,
    repeat, fold, fusion_prob, xgboost_prob) once that exists; `clinfuse_out_of_fold` is the only caller.
    """
    from clinfuse.platform.security.pseudonym import Pseudonymiser

    logs = run.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for stale in (cache, run):  # a reused cache or run folder would make the timings meaningless
        shutil.rmtree(stale, ignore_errors=True)
    ingest_s = _run([str(clinfuse), "ingest", "--config", str(fold_config), "--out", str(cache)], env,
                    logs / f"{run.name}-ingest.log")  # fmt: skip
    train_started = time.time()
    train_s = _run([str(clinfuse), "train", "--cache", str(cache), "--out", str(run), *train_args], env,
                   logs / f"{run.name}-train.log")  # fmt: skip
    train_ended = train_started + train_s
    fit_start, fit_end = _mtime(run, "logs/**/hparams.yaml"), _mtime(run, "logs/**/metrics.csv")
    info = json.loads((run / "run.json").read_text())
    timings = {
        "ingest_s": ingest_s,
        "train_s": train_s,
        "train_in_process_s": float(info["duration_s"]),  # train() itself, without interpreter start and imports
        "train_startup_s": fit_start - train_started,
        "train_fit_s": fit_end - fit_start,
        "train_after_fit_s": train_ended - fit_end,
        "epochs": float(info.get("epochs_run", np.nan)),
    }
    table = pd.read_csv(fold_config.parent / "cohort.csv", dtype={"patient_id": str})
    pseudonym = Pseudonymiser(env["CLINFUSE_PSEUDONYM_KEY"].encode())
    source_of = {pseudonym(pid): pid for pid in table["patient_id"]}
    predictions = pd.read_parquet(run / "predictions.parquet")
    predictions = predictions[predictions["split"] == "test"]
    unknown = set(predictions["patient"]) - set(source_of)
    if unknown:
        raise RuntimeError(f"{len(unknown)} pseudonyms in {run} match no patient of {fold_config}")
    predictions.index = pd.Index(predictions["patient"].map(source_of), name="patient_id")
    return ClinFuseFold(predictions[["label", "fusion_prob", "xgboost_prob"]], timings)


def clinfuse_out_of_fold(
    cohort_dir: Path,
    label: pd.Series,
    fold_of: np.ndarray,
    work: Path,
    clinfuse: Path,
    train_args: list[str],
    seed: int,
) -> tuple[list[baselines.MethodResult], list[dict]]:
    """ClinFuse fusion and ClinFuse XGBoost, pooled out of fold over the folds, with per-fold timings."""
    env = os.environ | {"CLINFUSE_PSEUDONYM_KEY": BENCHMARK_KEY, "CLINFUSE_HOME": str(work / "clinfuse-home")}
    y = label.to_numpy()
    position = pd.Series(np.arange(len(label)), index=label.index)
    results = {m: baselines.MethodResult(m, np.full(len(y), np.nan)) for m in ("clinfuse:fusion", "clinfuse:xgboost")}
    timings = []
    for fold in range(int(fold_of.max()) + 1):
        config = real_cohorts.write_fold_config(cohort_dir, fold, seed=seed)
        out = run_clinfuse_fold(clinfuse, config, work / "cache" / f"fold{fold}", work / "runs" / f"fold{fold}", env,
                                train_args)  # fmt: skip
        rows = position.loc[out.predictions.index].to_numpy()
        expected = np.flatnonzero(fold_of == fold)
        if sorted(rows) != sorted(expected) or not np.array_equal(out.predictions["label"].to_numpy(), y[rows]):
            raise RuntimeError(f"fold {fold}: ClinFuse's test patients or labels differ from the benchmark's fold")
        for method, column in (("clinfuse:fusion", "fusion_prob"), ("clinfuse:xgboost", "xgboost_prob")):
            results[method].oof[rows] = out.predictions[column].to_numpy()
            results[method].fold_auroc.append(baselines._safe_auroc(y[rows], out.predictions[column].to_numpy()))
        total = out.timings["ingest_s"] + out.timings["train_s"]
        for result in results.values():
            result.wall_s += total
        timings.append(out.timings | {"fold": fold})
        print(f"  fold {fold}: ingest {out.timings['ingest_s']:.1f} s, train {out.timings['train_s']:.1f} s "
              f"({out.timings['epochs']:.0f} epochs), fusion AUROC {results['clinfuse:fusion'].fold_auroc[-1]:.3f}",
              flush=True)  # fmt: skip
    for result in results.values():
        result.detail = {k: float(np.nanmean([t[k] for t in timings])) for k in timings[0] if k != "fold"}
    return list(results.values()), timings


def clinfuse_cross_validated(cohort_dir: Path, label: pd.Series, work: Path, clinfuse: Path, train_args: list[str],
                             folds: int, seed: int) -> tuple[list[baselines.MethodResult], np.ndarray]:  # fmt: skip
    """One `clinfuse ingest` and one `clinfuse train --cv` (the product's own workflow); its out-of-fold
    predictions and its fold of every patient, which the baselines then reuse."""
    from clinfuse.platform.security.pseudonym import Pseudonymiser

    env = os.environ | {"CLINFUSE_PSEUDONYM_KEY": BENCHMARK_KEY, "CLINFUSE_HOME": str(work / "clinfuse-home")}
    cache, run, logs = work / "cache" / "cv", work / "runs" / "cv", work / "runs" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for stale in (cache, run):
        shutil.rmtree(stale, ignore_errors=True)
    ingest_s = _run([str(clinfuse), "ingest", "--config", str(cohort_dir / "cohort.yaml"), "--out", str(cache)], env,
                    logs / "cv-ingest.log")  # fmt: skip
    train_s = _run([str(clinfuse), "train", "--cache", str(cache), "--out", str(run), "--cv", str(folds),
                    "--seed", str(seed), *train_args], env, logs / "cv-train.log")  # fmt: skip
    oof = pd.read_parquet(run / "cv" / "oof_predictions.parquet")
    oof = oof[oof["repeat"] == 0]
    source_of = {Pseudonymiser(BENCHMARK_KEY.encode())(pid): pid for pid in label.index}
    position = pd.Series(np.arange(len(label)), index=label.index)
    rows = position.loc[oof["patient"].map(source_of)].to_numpy()
    fold_of = np.full(len(label), -1)
    fold_of[rows] = oof["fold"].to_numpy()
    fold_records = json.loads((run / "cv" / "folds.json").read_text())["per_fold"]
    in_process = sum(r["duration_s"] for r in fold_records)
    detail = {"ingest_s": ingest_s, "train_s": train_s, "folds_in_process_s": in_process}
    results = []
    for method, column in (("clinfuse:fusion", "fusion_prob"), ("clinfuse:xgboost", "xgboost_prob")):
        result = baselines.MethodResult(method, np.full(len(label), np.nan), wall_s=ingest_s + train_s, detail=detail)
        result.oof[rows] = oof[column].to_numpy()
        y = label.to_numpy()
        result.fold_auroc = [baselines._safe_auroc(y[fold_of == k], result.oof[fold_of == k]) for k in range(folds)]
        results.append(result)
    print(f"  clinfuse --cv {folds}: ingest {ingest_s:.1f} s, train {train_s:.1f} s (folds in process "
          f"{in_process:.1f} s, then the refit)", flush=True)  # fmt: skip
    return results, fold_of


def _detail(result: baselines.MethodResult) -> str:
    d = result.detail
    if not d:
        return ""
    if "folds_in_process_s" in d:
        return (f"one ingest {d['ingest_s']:.1f} s + one `train --cv` {d['train_s']:.1f} s (its folds' train() "
                f"{d['folds_in_process_s']:.1f} s; the rest: start-up, refit on all patients)")  # fmt: skip
    if np.isnan(d["train_fit_s"]):  # no branch trained by gradient: Lightning never started
        return (f"per fold: ingest {d['ingest_s']:.1f} + train {d['train_s']:.1f} s = process start-up and imports "
                f"{d['train_s'] - d['train_in_process_s']:.1f} + train() {d['train_in_process_s']:.1f}")  # fmt: skip
    per_epoch = d["train_fit_s"] / d["epochs"] if d.get("epochs") else float("nan")
    return (f"per fold: ingest {d['ingest_s']:.1f} + train {d['train_s']:.1f} s = start-up "
            f"{d['train_startup_s']:.1f} + fit {d['train_fit_s']:.1f} ({d['epochs']:.0f} ep, {per_epoch:.2f} s/ep) "
            f"+ after-fit {d['train_after_fit_s']:.1f}")  # fmt: skip


def format_table(rows: list[dict]) -> str:
    header = ["cohort", "method", "AUROC", "AUPRC", "Brier", "fold AUROC sd", "wall s", "time detail"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for r in rows:
        lines.append(f"| {r['cohort']} | {r['method']} | {r['auroc']:.3f} | {r['auprc']:.3f} | {r['brier']:.3f} | "
                     f"{r['fold_auroc_sd']:.3f} | {r['wall_s']:.0f} | {r['detail']} |")  # fmt: skip
    return "\n".join(lines)


def benchmark_cohort(name: str, args: argparse.Namespace) -> tuple[list[dict], dict]:
    cohort = real_cohorts.load_cohort(name)
    work = args.work / name
    cohort_dir = work / "cohort"
    real_cohorts.write_cohort(cohort, cohort_dir, folds_seed=args.seed, folds=args.folds)
    written = pd.read_csv(cohort_dir / "cohort.csv", dtype={"patient_id": str})
    assert written["patient_id"].tolist() == cohort.patient_ids.tolist()
    fold_of = written[real_cohorts.FOLD_COLUMN].to_numpy()
    folds = [(np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)) for k in range(args.folds)]
    y = cohort.label.to_numpy()
    summary = cohort.summary()
    print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in summary.items() if k != "cohort"), flush=True)

    results: list[baselines.MethodResult] = []
    timings: list[dict] = []
    if args.clinfuse_cv and not args.skip_clinfuse:
        results, fold_of = clinfuse_cross_validated(
            cohort_dir, cohort.label, work, args.clinfuse, shlex.split(args.clinfuse_train_args), args.folds, args.seed
        )
        folds = [(np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)) for k in range(args.folds)]
    elif not args.skip_clinfuse:
        train_args = shlex.split(args.clinfuse_train_args)
        max_epochs = args.max_epochs.get(name, args.max_epochs.get("*"))
        if max_epochs:
            train_args += ["--max-epochs", str(max_epochs)]
        clinfuse_results, timings = clinfuse_out_of_fold(cohort_dir, cohort.label, fold_of, work, args.clinfuse,
                                                         train_args, args.seed)  # fmt: skip
        results += clinfuse_results
    modalities = {m: t.reindex(cohort.patient_ids).to_numpy(float) for m, t in cohort.modalities.items()}
    for result in baselines.run_baselines(modalities, y, folds, seed=args.seed):
        print(f"  {result.method}: {result.wall_s:.1f} s", flush=True)
        results.append(result)
    rows = [{"cohort": name, "method": r.method, **baselines.summarise(r, y), "detail": _detail(r),
             "fold_auroc": r.fold_auroc} for r in results]  # fmt: skip
    return rows, {"summary": summary, "clinfuse_fold_timings": timings}


def _max_epochs(text: str) -> dict[str, int]:
    """'12' -> every cohort; 'support2=8,nki70=40' -> per cohort (others: ClinFuse's default)."""
    if "=" not in text:
        return {"*": int(text)}
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    return {name.strip(): int(value) for name, value in pairs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", default=",".join(DEFAULT_COHORTS),
                        help=f"comma-separated, of {', '.join(real_cohorts.COHORTS)}")  # fmt: skip
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="fold assignment, validation split, model seeds")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cohort folders, caches, runs, results.json")
    parser.add_argument("--clinfuse", type=Path, default=REPO / ".venv" / "bin" / "clinfuse",
                        help="the clinfuse executable to benchmark")  # fmt: skip
    parser.add_argument("--clinfuse-train-args", default="", help="extra arguments for `clinfuse train`")
    parser.add_argument(
        "--max-epochs",
        type=_max_epochs,
        default={},
        help="for `clinfuse train` (default: its own): N, or support2=8,...",
    )
    parser.add_argument("--skip-clinfuse", action="store_true", help="baselines only")
    parser.add_argument("--clinfuse-cv", action="store_true",
                        help="one `clinfuse train --cv` per cohort; the baselines use its folds")  # fmt: skip
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.cohorts.split(",") if n.strip()]
    for name in names:
        if name not in real_cohorts.COHORTS:
            parser.error(f"unknown cohort {name!r}; use one of {', '.join(real_cohorts.COHORTS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows, cohorts = [], {}
    for name in names:
        cohort_rows, cohorts[name] = benchmark_cohort(name, args)
        rows += cohort_rows
    record = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "clinfuse": str(args.clinfuse),
        "clinfuse_train_args": args.clinfuse_train_args,
        "max_epochs": args.max_epochs,
        "folds": args.folds,
        "seed": args.seed,
        "cohorts": cohorts,
        "rows": rows,
        "total_s": round(time.perf_counter() - started, 1),
    }
    (args.work / "results.json").write_text(json.dumps(record, indent=1))
    print()
    print(format_table(rows))
    print(f"\n{args.folds}-fold CV, seed {args.seed}; total {record['total_s']:.0f} s; "
          f"results in {args.work / 'results.json'}")  # fmt: skip


if __name__ == "__main__":
    main()
