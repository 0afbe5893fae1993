"""Explanations against the demo cohort's planted truth; prints the three figures beside their chance levels.

Run: .venv/bin/python tests/benchmarks/explain_truth_check.py --run data/demo/run --cohort data/demo/cohort
The key that pseudonymised the cache must be the current one (CLINFUSE_HOME / CLINFUSE_PSEUDONYM_KEY).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from clinfuse.pipelines.explain_truth import check_against_truth

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
    print(f"image heatmap mass inside the finding's box: {heat['mean_fraction']:.2f} over {heat['n']} images "
          f"(box area share {heat['chance']:.2f})")  # fmt: skip
    print(f"took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
