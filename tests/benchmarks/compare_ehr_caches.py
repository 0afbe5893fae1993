"""Do feature caches ingested from different EHR renderings of one cohort hold the same EHR features?

    .venv/bin/python tests/benchmarks/compare_ehr_caches.py /tmp/e-mimic4-cache /tmp/e-omop-cache ... [--modality ehr]

Compares each cache's EHR modality with the first one's: the patients present, every feature array (exactly,
element by element), the fitted vocabulary, lab panel and normalisation, and the events per kind. Exits 1 when any
differs, so it can gate a script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from clinfuse.kinds.ehr.ingest import ARRAY_FILES
from clinfuse.platform.cache import FeatureCache


def ehr_features(cache_path: Path, modality: str) -> dict[str, object]:
    """What a model sees of the modality: present patients (pseudonyms), arrays and alignment."""
    cache = FeatureCache(cache_path)
    frame = cache.cohort
    present = frame.loc[frame[f"present_{modality}"], "patient"].tolist()
    return {
        "present patients": present,
        **{f"{name}.npy": np.asarray(cache.array(modality, name)) for name in ARRAY_FILES},
        "alignment": cache.json(modality, "alignment"),
        "events by kind": cache.report["modalities"][modality]["events_by_kind"],
    }


def differences(reference: dict[str, object], other: dict[str, object]) -> list[str]:
    found = []
    for key, expected in reference.items():
        actual = other[key]
        if isinstance(expected, np.ndarray):
            if expected.shape != actual.shape or expected.dtype != actual.dtype:
                found.append(f"{key}: shape/dtype {actual.shape} {actual.dtype} vs {expected.shape} {expected.dtype}")
            elif not np.array_equal(expected, actual):
                found.append(f"{key}: {int((expected != actual).sum())} elements differ")
        elif expected != actual:
            found.append(f"{key} differs")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("caches", nargs="+", type=Path)
    parser.add_argument("--modality", default="ehr")
    args = parser.parse_args()
    reference = ehr_features(args.caches[0], args.modality)
    shapes = ", ".join(f"{k} {v.shape}" for k, v in reference.items() if isinstance(v, np.ndarray))
    print(f"reference {args.caches[0]}: {shapes}; events by kind {reference['events by kind']}")
    failed = False
    for path in args.caches[1:]:
        found = differences(reference, ehr_features(path, args.modality))
        print(f"{path}: {'identical EHR features' if not found else 'DIFFERENT: ' + '; '.join(found)}")
        failed |= bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
