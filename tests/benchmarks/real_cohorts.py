"""Real public cohorts for benchmarking ClinFuse: survival datasets shipped by the `survset` package (PyPI).

Each cohort becomes a binary task "event within the horizon": label 1 = event at or before the horizon,
label 0 = followed beyond the horizon without an event before it; patients censored before the horizon are
dropped (their label is unknown). Its features are split into TWO table modalities.

| cohort    | source (survset name)       | horizon   | modalities                                                  |
| --------- | --------------------------- | --------- | ----------------------------------------------------------- |
| nki70     | NKI breast cancer, 70-gene  | 5 years   | genomics (70 genes) / clinical (age, size, nodes, ER, grade)|
| support2  | SUPPORT ICU study           | 180 days  | physiology (vitals, labs, scores) / clinical (demographics, |
|           |                             |           | diagnosis group, comorbidities, function, DNR at entry)     |
| ovarian   | pooled ovarian cancer       | 2 years   | genomics (158 genes) / clinical (debulking, study id)       |
|           | (dataOvarian1)              |           |                                                             |
| gse3143   | breast cancer (Bild 2006)   | 5 years   | genomics (8,659 genes) / clinical (ER level 0-3)            |

support2 leaves out what is not known at study entry or is itself a prediction of the outcome: sfdm2
(functional disability at 2 months; one level is "<2 mo. follow-up", i.e. died), surv2m / surv6m (the SUPPORT
model's survival estimates) and a DNR order written after study admission (only "DNR before admission" is kept).

Writers produce a ClinFuse cohort folder:

    DIR/cohort.csv      patient_id, label, index_time (a fixed date: these tables carry no time), [sex, age],
                        fold (stratified fold of the benchmark, ignored by ClinFuse)
    DIR/<modality>.csv  wide, keyed by patient_id, numeric only (categories one-hot encoded here)
    DIR/cohort.yaml     two `kind: table` modalities; ClinFuse's own seeded 70/15/15 split
    DIR/folds/fold<k>/cohort.csv + cohort.yaml   (write_fold_config) the same cohort with a split column:
                        test = fold k, val = a stratified share of the rest, train = the remainder

Command line (from the repository root):

    .venv/bin/python tests/benchmarks/real_cohorts.py --cohort nki70 --out DIR
    .venv/bin/clinfuse ingest --config DIR/cohort.yaml --out CACHE
"""

from __future__ import annotations

import argparse
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.model_selection import StratifiedKFold, train_test_split

INDEX_TIME = "2000-01-01 00:00:00"  # the survset tables carry no calendar time; every feature counts
FOLD_COLUMN = "fold"


@dataclass(frozen=True)
class RealCohort:
    """One cohort: labels and modality tables share the same index (patient ids as str, in cohort order)."""

    name: str
    description: str
    horizon: float
    time_unit: str
    label: pd.Series  # 0/1 int
    modalities: dict[str, pd.DataFrame]  # numeric float columns, NaN = not measured
    sex: pd.Series | None = None  # 'F' / 'M'
    age: pd.Series | None = None

    @property
    def patient_ids(self) -> pd.Index:
        return self.label.index

    def summary(self) -> dict:
        return {
            "cohort": self.name,
            "patients": len(self.label),
            "events": int(self.label.sum()),
            "horizon": f"{self.horizon:g} {self.time_unit}",
            **{f"features_{name}": table.shape[1] for name, table in self.modalities.items()},
        }


def _survset(name: str) -> pd.DataFrame:
    from SurvSet.data import SurvLoader

    # survset stores its datasets as pandas pickles inside the installed package: unpickling them is the same
    # trust as importing the package's code (a pinned PyPI dependency), nothing downloaded at run time.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # old pickles name numpy.core
        frame = SurvLoader().load_dataset(name)["df"]
    if "time2" in frame and frame["time2"].notna().any():
        raise ValueError(f"survset {name} has time-varying rows; not a one-row-per-patient cohort")
    frame = frame.copy()
    frame["patient_id"] = frame["pid"].astype(str).str.strip()
    if frame["patient_id"].duplicated().any():
        raise ValueError(f"survset {name}: duplicated patient ids")
    return frame.set_index("patient_id")


def horizon_label(frame: pd.DataFrame, horizon: float) -> pd.Series:
    """1 = event at or before the horizon, 0 = followed to or past it event-free then; censored earlier: dropped."""
    time, event = frame["time"].astype(float), frame["event"].astype(int)
    positive = (event == 1) & (time <= horizon)
    negative = ~positive & (time >= horizon)
    label = pd.Series(np.where(positive, 1, 0), index=frame.index, name="label")
    return label[positive | negative].astype(int)


def _slug(value: object) -> str:
    text = str(value).strip().lower()
    for old, new in (("<=", "le"), (">=", "ge"), ("<", "lt"), (">", "gt"), ("+", "plus"), ("$", "")):
        text = text.replace(old, new)
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_") or "blank"


def one_hot(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One 0/1 column `<column>_<level>` per observed level (missing values give all zeros)."""
    parts = []
    for column in columns:
        values = frame[column]
        levels = sorted(values.dropna().unique(), key=str)
        names = [f"{column}_{_slug(level)}" for level in levels]
        if len(set(names)) != len(names):
            raise ValueError(f"one-hot names of {column} collide: {names}")
        parts.append(pd.DataFrame({n: (values == lv).astype(float) for n, lv in zip(names, levels, strict=True)}))
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=frame.index)


def _numeric(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame[columns].apply(pd.to_numeric, errors="raise").astype(float)


def _strip(frame: pd.DataFrame) -> pd.DataFrame:
    """survset prefixes num_/fac_; feature names become plain identifiers (XGBoost rejects [ ] <)."""
    renamed = frame.rename(columns=lambda c: re.sub(r"[^A-Za-z0-9_]+", "_", re.sub(r"^(num|fac)_", "", c)))
    if renamed.columns.duplicated().any():
        raise ValueError(f"duplicated feature names: {list(renamed.columns[renamed.columns.duplicated()])[:5]}")
    return renamed


def _gene_columns(frame: pd.DataFrame, exclude: set[str]) -> list[str]:
    return [c for c in frame.columns if c.startswith("num_") and c not in exclude]


def load_nki70() -> RealCohort:
    """NKI 70-gene breast cancer cohort (144 patients, metastasis-free survival in years), 5-year horizon."""
    raw = _survset("nki70")
    label = horizon_label(raw, 5.0)
    raw = raw.loc[label.index]
    clinical = pd.concat([_numeric(raw, ["num_Age"]), one_hot(raw, ["fac_Diam", "fac_N", "fac_ER", "fac_Grade"])],
                         axis=1)  # fmt: skip
    genomics = _numeric(raw, _gene_columns(raw, {"num_Age"}))
    return RealCohort(
        "nki70", "NKI breast cancer, distant metastasis within 5 years", 5.0, "years", label,
        {"genomics": _strip(genomics), "clinical": _strip(clinical)}, age=raw["num_Age"].astype(float),
    )  # fmt: skip


SUPPORT_PHYSIOLOGY = ["num_meanbp", "num_wblc", "num_hrt", "num_resp", "num_temp", "num_pafi", "num_alb",
                      "num_bili", "num_crea", "num_sod", "num_ph", "num_glucose", "num_bun", "num_urine",
                      "num_sps", "num_scoma"]  # fmt: skip
SUPPORT_CLINICAL_NUMERIC = ["num_age", "num_num_co", "num_edu", "num_hday", "num_adlp", "num_adls"]
SUPPORT_CLINICAL_FACTORS = ["fac_sex", "fac_dzgroup", "fac_dzclass", "fac_race", "fac_diabetes", "fac_dementia",
                            "fac_ca", "fac_income"]  # fmt: skip
SUPPORT_LEFT_OUT = ["num_surv2m", "num_surv6m", "fac_sfdm2", "fac_num_co"]  # fac_dnr: only 'before admission' kept


def load_support2() -> RealCohort:
    """SUPPORT (9,105 seriously ill hospitalised adults, days to death), death within 180 days."""
    raw = _survset("support2")
    label = horizon_label(raw, 180.0)
    raw = raw.loc[label.index]
    physiology = _numeric(raw, SUPPORT_PHYSIOLOGY)
    dnr_before = (raw["fac_dnr"] == "dnr before sadm").astype(float).rename("dnr_before_admission")
    clinical = pd.concat([_numeric(raw, SUPPORT_CLINICAL_NUMERIC), one_hot(raw, SUPPORT_CLINICAL_FACTORS),
                          dnr_before], axis=1)  # fmt: skip
    sex = raw["fac_sex"].map({"female": "F", "male": "M"})
    return RealCohort(
        "support2", "SUPPORT ICU cohort, death within 180 days", 180.0, "days", label,
        {"physiology": _strip(physiology), "clinical": _strip(clinical)}, sex=sex, age=raw["num_age"].astype(float),
    )  # fmt: skip


def load_ovarian() -> RealCohort:
    """Pooled ovarian cancer studies (912 patients, 158 genes, days to event), event within 2 years.

    compound.Cox's dataOvarian1 (curatedOvarianData subset): `group` is the source study's id, `debulk` 1 =
    optimal debulking; the event is the source's `event` / `t.event`.
    """
    raw = _survset("dataOvarian1")
    label = horizon_label(raw, 730.0)
    raw = raw.loc[label.index]
    clinical = one_hot(raw, ["fac_debulk", "fac_group"])
    genomics = _numeric(raw, _gene_columns(raw, set()))
    return RealCohort(
        "ovarian", "pooled ovarian cancer (compound.Cox dataOvarian1), event within 2 years", 730.0, "days", label,
        {"genomics": _strip(genomics), "clinical": _strip(clinical)},
    )  # fmt: skip


def load_gse3143() -> RealCohort:
    """GSE3143 breast cancer (158 patients, 8,659 genes; survival in months), death within 5 years."""
    raw = _survset("gse3143")
    label = horizon_label(raw, 60.0)
    raw = raw.loc[label.index]
    clinical = _numeric(raw, ["num_erlev"])  # ordinal ER level 0-3 (fac_erlev holds the same values)
    genomics = _numeric(raw, _gene_columns(raw, {"num_erlev"}))
    return RealCohort(
        "gse3143", "GSE3143 breast cancer, death within 5 years", 60.0, "months", label,
        {"genomics": _strip(genomics), "clinical": _strip(clinical)},
    )  # fmt: skip


COHORTS: dict[str, Callable[[], RealCohort]] = {
    "nki70": load_nki70,
    "support2": load_support2,
    "ovarian": load_ovarian,
    "gse3143": load_gse3143,
}


def load_cohort(name: str) -> RealCohort:
    if name not in COHORTS:
        raise SystemExit(f"error: unknown cohort {name!r}; use one of {', '.join(COHORTS)}")
    return COHORTS[name]()


def stratified_folds(label: pd.Series | np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number (0..folds-1) per patient: StratifiedKFold with shuffling, fixed seed."""
    y = np.asarray(label, dtype=int)
    assignment = np.empty(len(y), dtype=int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y)):
        assignment[test] = fold
    return assignment


def fold_splits(label: pd.Series, fold_of: np.ndarray, fold: int, val_share: float = 0.15, seed: int = 0) -> pd.Series:
    """train/val/test per patient for one fold: test = the fold, val = a stratified share of the rest."""
    y = np.asarray(label, dtype=int)
    rest = np.flatnonzero(fold_of != fold)
    _, val = train_test_split(rest, test_size=val_share, stratify=y[rest], random_state=seed + fold)
    split = np.full(len(y), "train", dtype=object)
    split[fold_of == fold] = "test"
    split[val] = "val"
    return pd.Series(split, index=label.index, name="split")


def _cohort_yaml(cohort: RealCohort, table_path: str, modality_prefix: str, split_column: str | None,
                 seed: int) -> dict:  # fmt: skip
    table: dict = {"path": table_path, "patient_id": "patient_id", "label": "label", "index_time": "index_time"}
    if split_column:
        table["split"] = split_column
    if cohort.sex is not None:
        table["sex"] = "sex"
    if cohort.age is not None:
        table["age"] = "age"
    config: dict = {"name": cohort.name, "cohort": table}
    if not split_column:
        config["split"] = {"train": 0.7, "val": 0.15, "test": 0.15, "seed": seed}
    config["pseudonymise_ids"] = True
    config["modalities"] = [
        {"name": name, "kind": "table", "path": f"{modality_prefix}{name}.csv", "layout": "wide",
         "patient_id": "patient_id", "on_duplicate_patient": "error", "on_non_numeric": "error",
         "on_all_nan_column": "drop"}
        for name in cohort.modalities
    ]  # fmt: skip
    return config


def _cohort_table(cohort: RealCohort) -> pd.DataFrame:
    table = pd.DataFrame({"patient_id": cohort.patient_ids, "label": cohort.label.to_numpy(),
                          "index_time": INDEX_TIME})  # fmt: skip
    if cohort.sex is not None:
        table["sex"] = cohort.sex.reindex(cohort.patient_ids).to_numpy()
    if cohort.age is not None:
        table["age"] = cohort.age.reindex(cohort.patient_ids).to_numpy()
    return table


def write_cohort(name: str | RealCohort, out_dir: str | Path, folds_seed: int = 0, folds: int = 5) -> Path:
    """Write the cohort folder (cohort.csv with the benchmark's fold column, one CSV per modality, cohort.yaml)."""
    cohort = load_cohort(name) if isinstance(name, str) else name
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = _cohort_table(cohort)
    table[FOLD_COLUMN] = stratified_folds(cohort.label, folds, folds_seed)
    table.to_csv(out / "cohort.csv", index=False)
    for modality, features in cohort.modalities.items():
        features.reindex(cohort.patient_ids).rename_axis("patient_id").to_csv(out / f"{modality}.csv")
    config = _cohort_yaml(cohort, "cohort.csv", "", None, folds_seed)
    (out / "cohort.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out / "cohort.yaml"


def write_fold_config(cohort_dir: str | Path, fold: int, val_share: float = 0.15, seed: int = 0) -> Path:
    """DIR/folds/fold<k>/{cohort.csv, cohort.yaml}: the cohort written by write_cohort with a split column."""
    base = Path(cohort_dir)
    table = pd.read_csv(base / "cohort.csv", dtype={"patient_id": str})
    config = yaml.safe_load((base / "cohort.yaml").read_text())
    label = table.set_index("patient_id")["label"]
    table["split"] = fold_splits(label, table[FOLD_COLUMN].to_numpy(), fold, val_share, seed).to_numpy()
    target = base / "folds" / f"fold{fold}"
    target.mkdir(parents=True, exist_ok=True)
    table.drop(columns=[FOLD_COLUMN]).to_csv(target / "cohort.csv", index=False)
    config["cohort"]["split"] = "split"
    config.pop("split", None)
    for modality in config["modalities"]:
        modality["path"] = f"../../{modality['path']}"
    (target / "cohort.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target / "cohort.yaml"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", required=True, choices=sorted(COHORTS))
    parser.add_argument("--out", required=True, type=Path, help="folder for cohort.csv, modality CSVs, cohort.yaml")
    parser.add_argument("--folds-seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    cohort = load_cohort(args.cohort)
    config = write_cohort(cohort, args.out, folds_seed=args.folds_seed, folds=args.folds)
    print(", ".join(f"{k}={v}" for k, v in cohort.summary().items()))
    print(f"wrote {config}; next: .venv/bin/clinfuse ingest --config {config} --out CACHE")


if __name__ == "__main__":
    main()
