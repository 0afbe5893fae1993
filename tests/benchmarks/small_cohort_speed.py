"""Small-cohort speed: `clinfuse ingest` + `clinfuse train --cv 5` + `clinfuse evaluate` against a scikit-learn
logistic stack on the same folds, each a separate process timed from its start, reading the same CSV files.

The cohort: 150 patients drawn (stratified, seeded) from scikit-learn's bundled Wisconsin breast cancer table
(569 fine-needle aspirates, label 1 = malignant; installed with scikit-learn, nothing downloaded), its 30
features split into TWO `kind: table` modalities: `nuclei_mean` (the 10 means) and `nuclei_spread` (the 10
standard errors and the 10 worst values). Written to WORK/cohort as cohort.csv, nuclei_mean.csv,
nuclei_spread.csv and cohort.yaml (ClinFuse's own seeded split; pseudonymised ids with a fixed test key).

What one run measures (each process timed from its start to its exit: wall seconds, and CPU seconds, which the
load of a shared machine inflates less):
  clinfuse  - `clinfuse ingest`, `clinfuse train --cv K` (K fold models, then the refit on every patient) and
              `clinfuse evaluate` (the pooled out-of-fold metrics); the train process split into its refit and
              folds (run.json / cv/folds.json `duration_s`: train() itself) and the rest (interpreter, imports,
              MLflow run, sealing);
  logistic  - one process, run LOGISTIC_RUNS times (the median counts): it reads the same CSVs and ClinFuse's fold
              of each patient (from RUN/cv/oof_predictions.parquet, pseudonyms mapped back with the key, written
              to WORK/folds.csv beforehand), then per fold fits a per-table median imputation + StandardScaler +
              LogisticRegression, stacked by a logistic regression on the tables' inner 5-fold out-of-fold logits,
              refits the same stack on every patient (as `train --cv` refits) and writes its pooled out-of-fold
              AUROC;
  ratio     - ClinFuse / logistic, against the goal of 2x the wall time, for ingest + train and for the whole
              workflow with evaluate; the out-of-fold AUROC of both, so speed is not bought with accuracy.
With --profile, `clinfuse train --cv K` runs once more under cProfile (not timed) and the ClinFuse functions with
the most cumulative time are printed, wrappers left out.

Run from the repository root (a couple of minutes on 2 CPU cores):

    .venv/bin/python tests/benchmarks/small_cohort_speed.py [--patients 150] [--folds 5] [--seed 0]
        [--profile] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from profile_hotspots import clinfuse_hotspots  # this folder is on sys.path when the script runs

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
BENCHMARK_KEY = "clinfuse-small-cohort-speed-benchmark-0123456789abcdef"  # test key: a public cohort only
GOAL_RATIO = 2.0
INNER_FOLDS = 5
INDEX_TIME = "2000-01-01 00:00:00"  # the table carries no time; every feature counts
TABLES = ("nuclei_mean", "nuclei_spread")
PROFILE_TOP = 20
LOGISTIC_RUNS = 3  # the logistic process takes seconds: its median over runs is less at the mercy of the machine


# -- the cohort ------------------------------------------------------------------------------------------------
def write_cohort(out: Path, patients: int, seed: int) -> Path:
    """cohort.csv, one CSV per table modality and cohort.yaml; returns cohort.yaml's path."""
    import pandas as pd
    import yaml
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.drop(columns=["target"])
    label = (data.target == 0).astype(int)  # scikit-learn codes malignant as 0
    rows, _ = train_test_split(frame.index.to_numpy(), train_size=patients, stratify=label, random_state=seed)
    rows = sorted(rows)
    ids = pd.Index([f"P{row:04d}" for row in rows], name="patient_id")
    out.mkdir(parents=True, exist_ok=True)
    cohort = pd.DataFrame({"label": label.loc[rows].to_numpy(), "index_time": INDEX_TIME}, index=ids)
    cohort.to_csv(out / "cohort.csv")
    features = frame.loc[rows].set_axis(ids).rename(columns=lambda c: c.replace(" ", "_"))
    mean = [c for c in features if c.startswith("mean_")]
    tables = {TABLES[0]: features[mean], TABLES[1]: features.drop(columns=mean)}
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv")
    config = {
        "name": "breast-cancer-small",
        "cohort": {"path": "cohort.csv", "patient_id": "patient_id", "label": "label", "index_time": "index_time"},
        "split": {"train": 0.7, "val": 0.15, "test": 0.15, "seed": seed},
        "pseudonymise_ids": True,
        "modalities": [{"name": name, "kind": "table", "path": f"{name}.csv", "layout": "wide"} for name in tables],
    }
    (out / "cohort.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out / "cohort.yaml"


# -- the logistic stack (its own process) ----------------------------------------------------------------------
def logistic_stack(cohort_dir: Path, folds_csv: Path, result_json: Path, seed: int) -> None:
    """Per fold: per-table imputation + scaling + logistic regression, stacked by a logistic regression on the
    tables' inner out-of-fold logits; then the refit on every patient. Writes the pooled out-of-fold AUROC."""
    import numpy as np
    import pandas as pd
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cohort = pd.read_csv(cohort_dir / "cohort.csv", dtype={"patient_id": str}).set_index("patient_id")
    folds = pd.read_csv(folds_csv, dtype={"patient_id": str}).set_index("patient_id")["fold"]
    blocks = [pd.read_csv(cohort_dir / f"{name}.csv", dtype={"patient_id": str}).set_index("patient_id")
              .reindex(cohort.index).to_numpy(float) for name in TABLES]  # fmt: skip
    y = cohort["label"].to_numpy(int)
    fold_of = folds.reindex(cohort.index).to_numpy(int)

    def table_model():
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=1000))

    def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        inner = StratifiedKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=seed)
        stacked = np.column_stack([cross_val_predict(table_model(), x[train], y[train], cv=inner,
                                                     method="decision_function") for x in blocks])  # fmt: skip
        meta = LogisticRegression(max_iter=1000).fit(stacked, y[train])
        bases = [table_model().fit(x[train], y[train]) for x in blocks]
        held_out = np.column_stack([b.decision_function(x[test]) for b, x in zip(bases, blocks, strict=True)])
        return meta.predict_proba(held_out)[:, 1]

    oof = np.full(len(y), np.nan)
    for fold in np.unique(fold_of):
        test = fold_of == fold
        oof[test] = fit_predict(np.flatnonzero(~test), np.flatnonzero(test))
    fit_predict(np.arange(len(y)), np.arange(len(y)))  # the deployable refit, as `train --cv` does
    result_json.write_text(json.dumps({"oof_auroc": float(roc_auc_score(y, oof))}))


# -- running and timing ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timed:
    """One process from start to exit: wall seconds, and CPU seconds (user + system, its children included), which a
    shared machine's load inflates less than the wall time."""

    wall: float
    cpu: float

    def __add__(self, other: Timed) -> Timed:
        return Timed(self.wall + other.wall, self.cpu + other.cpu)


def _timed(command: list[str], env: dict[str, str], log: Path) -> Timed:
    """Run one process, its output to `log`; exits the benchmark when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("w") as sink:
        done = subprocess.run(command, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"`{' '.join(command)}` failed ({done.returncode}); its output:\n{log.read_text()[-3000:]}")
    return Timed(wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)


def _write_folds(cohort_dir: Path, run: Path, out: Path) -> int:
    """ClinFuse's fold of every patient (first repeat), by source id; returns the number of folds."""
    import pandas as pd
    from clinfuse.platform.security.pseudonym import Pseudonymiser

    ids = pd.read_csv(cohort_dir / "cohort.csv", dtype={"patient_id": str})["patient_id"]
    pseudonym = Pseudonymiser(BENCHMARK_KEY.encode())
    source_of = {pseudonym(pid): pid for pid in ids}
    oof = pd.read_parquet(run / "cv" / "oof_predictions.parquet")
    oof = oof[oof["repeat"] == 0]
    if len(oof) != len(ids) or set(oof["patient"]) != set(source_of):
        raise SystemExit("ClinFuse's out-of-fold predictions do not cover each cohort patient exactly once")
    pd.DataFrame({"patient_id": oof["patient"].map(source_of), "fold": oof["fold"]}).to_csv(out, index=False)
    return int(oof["fold"].nunique())


def run_clinfuse(config: Path, work: Path, env: dict[str, str], folds: int, seed: int) -> dict[str, Timed]:
    """Ingest, train --cv and evaluate as a user would, each process timed."""
    cache, run, logs = work / "cache", work / "run", work / "logs"
    clinfuse = str(VENV_BIN / "clinfuse")
    return {
        "ingest": _timed([clinfuse, "ingest", "--config", str(config), "--out", str(cache)], env, logs / "ingest.log"),
        "train": _timed([clinfuse, "train", "--cache", str(cache), "--out", str(run), "--cv", str(folds), "--seed",
                         str(seed)], env, logs / "train.log"),
        "evaluate": _timed([clinfuse, "evaluate", str(run)], env, logs / "evaluate.log"),
    }  # fmt: skip


def train_stages(run: Path, train_wall: float) -> str:
    """The train process's wall time split by train() itself (run.json, cv/folds.json `duration_s`)."""
    refit = float(json.loads((run / "run.json").read_text())["duration_s"])
    folds = [float(r["duration_s"]) for r in json.loads((run / "cv" / "folds.json").read_text())["per_fold"]]
    return (f"refit {refit:.1f} + folds [{', '.join(f'{f:.1f}' for f in folds)}] + the rest (interpreter, imports, "
            f"MLflow run, sealing) {train_wall - refit - sum(folds):.1f}")  # fmt: skip


def profile_train(work: Path, env: dict[str, str], folds: int, seed: int) -> list[str]:
    """`clinfuse train --cv` once more under cProfile; the top ClinFuse functions by cumulative time, leaving out
    wrappers (a function spending 90% of its time in one ClinFuse callee)."""
    out, stats_file = work / "run-profiled", work / "train.prof"
    command = [sys.executable, "-m", "cProfile", "-o", str(stats_file), str(VENV_BIN / "clinfuse"), "train",
               "--cache", str(work / "cache"), "--out", str(out), "--cv", str(folds), "--seed", str(seed)]  # fmt: skip
    _timed(command, env, work / "logs" / "train-profiled.log")
    stats = pstats.Stats(str(stats_file))
    root = str(REPO)
    kept = clinfuse_hotspots(stats, root)
    total = max(entry[3] for entry in stats.stats.values())
    lines = [f"profile of `clinfuse train --cv {folds}` ({total:.1f} s under cProfile, main process only); top "
             f"{PROFILE_TOP} ClinFuse functions by cumulative time, wrappers left out:"]  # fmt: skip
    for (file, line, function), (_, calls, own, cumulative, _) in kept[:PROFILE_TOP]:
        lines.append(f"  {cumulative:7.2f} s cumulative {own:6.2f} s own {calls:>6} calls  {function}  "
                     f"({Path(file).relative_to(root)}:{line})")  # fmt: skip
    return lines


def benchmark(work: Path, patients: int, folds: int, seed: int, profile: bool) -> None:
    env = os.environ | {"CLINFUSE_PSEUDONYM_KEY": BENCHMARK_KEY, "CLINFUSE_HOME": str(work / "clinfuse-home")}
    env.pop("MLFLOW_TRACKING_URI", None)  # the run goes to the temporary CLINFUSE_HOME's store
    (work / "logs").mkdir(parents=True, exist_ok=True)
    cohort_dir = work / "cohort"
    config = write_cohort(cohort_dir, patients, seed)
    print(f"cohort: {patients} patients, tables {', '.join(TABLES)} in {cohort_dir}", flush=True)

    clinfuse = run_clinfuse(config, work, env, folds, seed)
    print("clinfuse: " + ", ".join(f"{stage} {t.wall:.1f} s" for stage, t in clinfuse.items()), flush=True)
    found = _write_folds(cohort_dir, work / "run", work / "folds.csv")
    if found != folds:
        raise SystemExit(f"ClinFuse's run has {found} folds, not {folds}")
    stack_json = work / "logistic.json"
    stack = [sys.executable, str(Path(__file__).resolve()), "--logistic-stack", str(cohort_dir),
             str(work / "folds.csv"), str(stack_json), "--seed", str(seed)]  # fmt: skip
    runs = sorted((_timed(stack, env, work / "logs" / "logistic.log") for _ in range(LOGISTIC_RUNS)),
                  key=lambda t: t.wall)  # fmt: skip
    logistic = runs[len(runs) // 2]
    logistic_auroc = json.loads(stack_json.read_text())["oof_auroc"]
    metrics = json.loads((work / "run" / "metrics.json").read_text())

    ingest_train = clinfuse["ingest"] + clinfuse["train"]
    rows = {f"logistic stack (one process, median of {LOGISTIC_RUNS})": logistic,
            f"clinfuse ingest + train --cv {folds}": ingest_train,
            f"clinfuse ingest + train --cv {folds} + evaluate": ingest_train + clinfuse["evaluate"]}  # fmt: skip
    print()
    print(f"{'':<48} {'wall s':>8} {'x logistic':>11} {'CPU s':>8} {'x logistic':>11}")
    for name, t in rows.items():
        print(f"{name:<48} {t.wall:8.1f} {t.wall / logistic.wall:11.2f} {t.cpu:8.1f} {t.cpu / logistic.cpu:11.2f}")
    for name, t in list(rows.items())[1:]:
        verdict = "met" if t.wall <= GOAL_RATIO * logistic.wall else "NOT met"
        print(f"goal {name} within {GOAL_RATIO:g}x the logistic stack's wall time: {verdict}")
    stages = train_stages(work / "run", clinfuse["train"].wall)
    print(f"clinfuse stages, wall s: ingest {clinfuse['ingest'].wall:.1f} | train {clinfuse['train'].wall:.1f} = "
          f"{stages} | evaluate {clinfuse['evaluate'].wall:.1f}")  # fmt: skip
    print(f"out-of-fold AUROC: clinfuse fusion {metrics['fusion']['auroc']:.3f} (xgboost baseline "
          f"{metrics['xgboost']['auroc']:.3f}), logistic stack {logistic_auroc:.3f}")  # fmt: skip
    if profile:
        print()
        print("\n".join(profile_train(work, env, folds, seed)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=150)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="cohort draw, ClinFuse's folds and models")
    parser.add_argument("--profile", action="store_true", help="also profile `clinfuse train --cv` (cProfile)")
    parser.add_argument("--work", type=Path, help="keep the cohort, cache, runs and logs here (default: temporary)")
    parser.add_argument("--logistic-stack", nargs=3, type=Path, metavar=("COHORT_DIR", "FOLDS_CSV", "RESULT_JSON"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    if args.logistic_stack:
        logistic_stack(*args.logistic_stack, seed=args.seed)
        return
    if args.work is not None:
        if args.work.exists() and any(args.work.iterdir()):
            parser.error(f"--work {args.work} is not empty (its cache and runs would make the timings meaningless)")
        benchmark(args.work, args.patients, args.folds, args.seed, args.profile)
        return
    with tempfile.TemporaryDirectory(prefix="clinfuse-small-cohort-") as work:
        benchmark(Path(work), args.patients, args.folds, args.seed, args.profile)


if __name__ == "__main__":
    main()
