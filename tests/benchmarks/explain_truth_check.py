"""Explanations against the demo cohort's planted truth; prints each figure beside its chance level.

Run: .venv/bin/python tests/benchmarks/explain_truth_check.py --run data/demo/run --cohort data/demo/cohort
The key that pseudonymised the cache must be the current one (CLINFUSE_HOME / CLINFUSE_PSEUDONYM_KEY).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from explain_truth import check_against_truth  # this folder is on sys.path when the script runs

GOALS = {"dominant_modality_first": 0.80, "planted_genes_in_top20": 0.70}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--cohort", type=Path, required=True)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    started = time.perf_counter()
    result = check_against_truth(args.run, args.cohort, args.split)
    print(json.dumps(result, indent=1))
    dominant, genes, heat = (result[k] for k in ("dominant_modality_first", "planted_genes_in_top20",
                                                 "heatmap_mass_in_finding"))  # fmt: skip
    print(f"dominant modality ranked first: {dominant['fraction']:.2f} of {dominant['n']} "
          f"(chance {dominant['chance']:.2f}, goal >= {GOALS['dominant_modality_first']})")  # fmt: skip
    print(f"planted genes in table SHAP top-20: {genes['mean_recall']:.2f} over {genes['n']} positives "
          f"(chance {genes['chance']:.3f}, goal >= {GOALS['planted_genes_in_top20']})")  # fmt: skip
    print(f"image heatmap mass inside the finding's box: {_f(heat['mean_fraction'])} over {heat['n']} images "
          f"(box area share {_f(heat['chance'])})")  # fmt: skip
    sphere = result["ct_heatmap_mass_in_sphere"]
    if sphere["n"]:
        print(f"CT 3D heatmap mass inside the planted sphere: {_f(sphere['mean_fraction'])} over {sphere['n']} "
              f"volumes (sphere's share of the volume {_f(sphere['chance'], 4)})")  # fmt: skip
    keys = (
        "phrase_words_in_notes_top5",
        "signal_word_attribution",
        "ecg_mass_in_planted_leads",
        "ecg_mass_in_st_segments",
    )
    notes, words, leads, ecg = (result[k] for k in keys)
    if notes["n"] or words["n_positive"]:
        print(f"words of planted phrases among the notes' top-5 tokens: {_f(notes['fraction'])} of {notes['n']} "
              f"patients (chance {_f(notes['chance'])})")  # fmt: skip
        print(f"mean attribution of the findings' key words: {_f(words['in_planted_phrases'], 4)} in planted phrases "
              f"({words['n_positive']} patients), {_f(words['in_negations'], 4)} in negations "
              f"({words['n_negated']} patients)")  # fmt: skip
    if ecg["n"]:
        print(f"ECG |attribution| in the planted leads (V1-V4): {_f(leads['mean_fraction'])} over {leads['n']} ECGs "
              f"(their share of the leads {_f(leads['chance'])})")  # fmt: skip
        print(f"ECG |attribution| inside the planted ST segments: {_f(ecg['mean_fraction'])} over {ecg['n']} "
              f"ECGs (segments' share {_f(ecg['chance'], 3)})")  # fmt: skip
    print(f"took {time.perf_counter() - started:.0f} s")


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
