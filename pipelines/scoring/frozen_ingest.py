"""Ingest a cohort for scoring exactly as the model's training cohort was ingested.

The model bundle fixes each modality's kind, preprocessing (image size, window, cleaning policies, vocabulary
limits) and fitted alignment; the scoring cohort.yaml only says where the data lives. Nothing is refitted.
"""

from __future__ import annotations

import json
from pathlib import Path

from clinfuse.pipelines.registry.bundle import ALIGNMENTS_DIR, MODALITIES_FILE
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.config import CohortConfig, load_cohort_config
from clinfuse.platform.dask_workers import DaskWorkers
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.ingest.runner import ingest_config


def scoring_config(config_path: Path, bundle: Path) -> CohortConfig:
    """The cohort config with the model's modalities, in the model's order, under the model's preprocessing."""
    config = load_cohort_config(config_path, labels_required=False)
    given = {m.name: m for m in config.modalities}
    modalities = []
    trained = json.loads((bundle / MODALITIES_FILE).read_text())
    for name, entry in trained.items():
        if name not in given:
            raise ClinFuseError(
                f"{config_path.name} has no modality '{name}', which the model was trained on",
                f"add a '{name}' modality (kind {entry['kind']}) to modalities; the model uses: {', '.join(trained)}",
            )
        if given[name].kind != entry["kind"]:
            raise ClinFuseError(
                f"modality '{name}' is of kind {given[name].kind} in {config_path.name}, "
                f"but of kind {entry['kind']} in the model",
                f"set kind: {entry['kind']} for '{name}'",
            )
        site = given[name].site_field_names()
        # only what the site set: a default of this site's config must not override the model's setting
        location = {k: v for k, v in given[name].model_dump(exclude_unset=True).items() if k in site}
        modalities.append(type(given[name]).model_validate({**entry["config"], **location}))
    return config.model_copy(update={"modalities": tuple(modalities)})


def frozen_alignments(bundle: Path) -> dict[str, dict]:
    folder = bundle / ALIGNMENTS_DIR
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def ingest_for_scoring(
    config_path: Path, bundle: Path, cache: Path, workers: DaskWorkers | None, progress: bool
) -> FeatureCache:
    """Build (or reuse, when unchanged) the scoring feature cache of the cohort."""
    ingest_config(scoring_config(config_path, bundle), cache, workers=workers, progress=progress,
                  frozen_alignments=frozen_alignments(bundle))  # fmt: skip
    return FeatureCache(cache)
