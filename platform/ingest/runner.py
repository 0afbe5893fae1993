"""`clinfuse ingest`: cohort config in, complete feature cache out (atomically), reusing what is unchanged.

A modality whose inputs, config, cohort and code are unchanged is copied from the previous cache; a changed
one is rebuilt (DICOM images reuse decoded pixels per file digest). The new cache is assembled in a sibling
temporary folder and swapped in only when complete, so an interrupted ingest never leaves a cache that
looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from clinfuse.platform.cache.feature_cache import (
    CACHE_FORMAT,
    COHORT_FILE,
    MANIFEST_FILE,
    MODALITIES_DIR,
    REPORT_FILE,
    FeatureCache,
)
from clinfuse.platform.config import CohortConfig, ModalityConfig, load_cohort_config
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.ingest.cohort_table import SCORING_SPLIT, SPLITS, Cohort, load_cohort
from clinfuse.platform.ingest.context import IngestContext, ModalityOutput
from clinfuse.platform.ingest.dicom_modality import ingest_dicom
from clinfuse.platform.ingest.ehr_modality import ingest_ehr
from clinfuse.platform.ingest.fingerprint import code_version, combine, file_digest, tree_digests
from clinfuse.platform.ingest.table_modality import ingest_table
from clinfuse.platform.security import Pseudonymiser, load_pseudonym_key

Ingester = Callable[[ModalityConfig, Cohort, Path, IngestContext], ModalityOutput]
# One ingester per modality kind; a new kind is one entry here plus its module.
INGESTERS: dict[str, Ingester] = {"dicom": ingest_dicom, "table": ingest_table, "ehr": ingest_ehr}


@dataclass(frozen=True)
class IngestResult:
    cache: Path
    rebuilt: list[str]
    reused: list[str]
    up_to_date: bool


def ingest(config_path: Path, out: Path, workers: int | None = None, progress: bool = False) -> IngestResult:
    """Build or refresh the feature cache at `out` from the cohort config at `config_path` (for training)."""
    return ingest_config(load_cohort_config(config_path), out, workers=workers, progress=progress)


def ingest_config(
    config: CohortConfig,
    out: Path,
    workers: int | None = None,
    progress: bool = False,
    frozen_alignments: dict[str, dict] | None = None,
) -> IngestResult:
    """Build or refresh the feature cache at `out` from a loaded cohort config.

    With `frozen_alignments` (scoring) the cohort needs no labels, every patient is in the split `score`,
    and each modality applies the given alignment (gene panel, vocabulary, normalisation) instead of
    fitting one.
    """
    started = time.perf_counter()
    scoring = frozen_alignments is not None
    pseudonymise = Pseudonymiser(load_pseudonym_key() if config.pseudonymise_ids else None, config.pseudonymise_ids)
    cohort = load_cohort(config, scoring=scoring)
    fingerprints, input_digests = _fingerprints(config, pseudonymise, frozen_alignments)
    previous = _previous_manifest(out)
    if previous and previous["fingerprints"] == fingerprints:
        return IngestResult(out, rebuilt=[], reused=[m.name for m in config.modalities], up_to_date=True)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        with tempfile.TemporaryDirectory(prefix=".scratch-", dir=out.parent) as scratch:
            report, cohort_table, rebuilt, reused = _build(
                config, cohort, fingerprints, input_digests, previous, out, staging, Path(scratch), pseudonymise,
                workers, progress, frozen_alignments or {},
            )  # fmt: skip
        report["duration_s"] = round(time.perf_counter() - started, 1)
        cohort_table.to_parquet(staging / COHORT_FILE, index=False)
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=1))
        _write_manifest(staging, config, fingerprints)
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    FeatureCache(out)  # verify what was written
    return IngestResult(out, rebuilt=rebuilt, reused=reused, up_to_date=False)


def _build(
    config: CohortConfig,
    cohort: Cohort,
    fingerprints: dict,
    input_digests: dict[str, dict[str, str]],
    previous: dict | None,
    out: Path,
    staging: Path,
    scratch: Path,
    pseudonymise: Pseudonymiser,
    workers: int | None,
    progress: bool,
    frozen_alignments: dict[str, dict],
) -> tuple[dict, pd.DataFrame, list[str], list[str]]:
    table = cohort.table
    cohort_table = pd.DataFrame({"patient": [pseudonymise(pid) for pid in table["patient_id"]]})
    for column in ("label", "split", "sex", "age"):
        if column in table:
            cohort_table[column] = table[column].to_numpy()
    previous_report = json.loads((out / REPORT_FILE).read_text()) if previous else {}
    previous_cohort = pd.read_parquet(out / COHORT_FILE) if previous else None
    modality_reports, rebuilt, reused = {}, [], []
    for modality in config.modalities:
        target = staging / MODALITIES_DIR / modality.name
        same = (
            bool(previous)
            and previous["fingerprints"]["modalities"].get(modality.name) == fingerprints["modalities"][modality.name]
            and previous["fingerprints"]["cohort"] == fingerprints["cohort"]
        )
        if same and previous_cohort is not None and f"row_{modality.name}" in previous_cohort:
            shutil.copytree(out / MODALITIES_DIR / modality.name, target, copy_function=_link_or_copy)
            rows = previous_cohort[f"row_{modality.name}"].to_numpy()
            issues = previous_cohort[f"issue_{modality.name}"].to_numpy()
            modality_reports[modality.name] = {**previous_report["modalities"][modality.name], "reused": True}
            reused.append(modality.name)
        else:
            previous_dir = out / MODALITIES_DIR / modality.name if previous else None
            context = IngestContext(
                pseudonymise=pseudonymise,
                scratch=scratch,
                previous=previous_dir if previous_dir and previous_dir.exists() else None,
                workers=workers or os.cpu_count() or 1,
                progress=progress,
                input_digests=input_digests[modality.name],
                alignment=frozen_alignments.get(modality.name),
            )
            modality_started = time.perf_counter()
            output = INGESTERS[modality.kind](modality, cohort, target, context)
            output.report["duration_s"] = round(time.perf_counter() - modality_started, 1)
            row_of = {pid: i for i, pid in enumerate(output.present_ids)}
            rows = table["patient_id"].map(lambda pid, r=row_of: r.get(pid, -1)).to_numpy()
            issues = table["patient_id"].map(lambda pid, i=output.patient_issues: i.get(pid, "")).to_numpy()
            modality_reports[modality.name] = {"kind": modality.kind, "reused": False, **output.report}
            rebuilt.append(modality.name)
        cohort_table[f"present_{modality.name}"] = rows >= 0
        cohort_table[f"row_{modality.name}"] = rows
        cohort_table[f"issue_{modality.name}"] = issues  # why a patient's data was unusable ('' if fine/absent)
    return _report(config, cohort_table, modality_reports, pseudonymise), cohort_table, rebuilt, reused


def _report(config: CohortConfig, cohort_table: pd.DataFrame, modalities: dict, pseudonymise: Pseudonymiser) -> dict:
    names = [m.name for m in config.modalities]
    patterns = cohort_table[[f"present_{n}" for n in names]].apply(
        lambda row: "+".join(n for n in names if row[f"present_{n}"]) or "none", axis=1
    )
    splits = {
        split: {"n": int((cohort_table["split"] == split).sum()),
                "positives": int(cohort_table.loc[cohort_table["split"] == split, "label"].sum())}
        for split in (*SPLITS, SCORING_SPLIT)
        if (cohort_table["split"] == split).any()
    }  # fmt: skip
    return {
        "cohort": {"name": config.name, "patients": len(cohort_table), "positives": int(cohort_table["label"].sum()),
                   "splits": splits},
        "pseudonymised_ids": pseudonymise.enabled,
        "presence_patterns": patterns.value_counts().to_dict(),
        "modalities": modalities,
    }  # fmt: skip


def _fingerprints(
    config: CohortConfig, pseudonymise: Pseudonymiser, frozen_alignments: dict[str, dict] | None
) -> tuple[dict, dict[str, dict[str, str]]]:
    """The cache's fingerprints, and per modality the digest of each input file keyed by its path (the
    ingesters reuse them instead of hashing the same files again)."""
    # Fingerprints cover content, not location: moving the data folder does not rebuild the cache.
    cohort = combine(
        file_digest(config.cohort.path),
        config.cohort.model_dump(mode="json", exclude={"path"}),
        config.split.model_dump(mode="json"),
        pseudonymise.key_fingerprint(),
        code_version(),
        frozen_alignments is not None,  # a scoring cache is never mistaken for a training one
    )
    modalities, digests = {}, {}
    for modality in config.modalities:
        inputs = tree_digests(modality.path)
        manifest = getattr(modality, "manifest", None)
        modalities[modality.name] = combine(
            modality.model_dump(mode="json", exclude={"path", "manifest"}),
            inputs,
            file_digest(manifest) if manifest else None,
            (frozen_alignments or {}).get(modality.name),
        )
        base = modality.path if modality.path.is_dir() else modality.path.parent
        digests[modality.name] = {str(base / relative): digest for relative, digest in inputs.items()}
    return {"cohort": cohort, "modalities": modalities, "code_version": code_version()}, digests


def _previous_manifest(out: Path) -> dict | None:
    try:
        FeatureCache(out)
    except ClinFuseError:
        if out.exists() and any(out.iterdir()) and not (out / MANIFEST_FILE).exists():
            raise ClinFuseError(
                f"--out {out} exists and is not a ClinFuse feature cache", "choose an empty or new folder"
            ) from None
        return None
    return json.loads((out / MANIFEST_FILE).read_text())


def _write_manifest(staging: Path, config: CohortConfig, fingerprints: dict) -> None:
    files = {str(p.relative_to(staging)): p.stat().st_size for p in sorted(staging.rglob("*")) if p.is_file()}
    manifest = {
        "format": CACHE_FORMAT,
        "complete": True,
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "cohort_name": config.name,
        "fingerprints": fingerprints,
        "modalities": {m.name: {"kind": m.kind, "config": m.model_dump(mode="json")} for m in config.modalities},
        "files": files,
    }
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))


def _swap_in(staging: Path, out: Path) -> None:
    """Replace `out` with `staging`: two renames, the old cache removed only after the new one is in place."""
    retired = None
    if out.exists():
        retired = out.parent / f".{out.name}.retired-{uuid.uuid4().hex[:8]}"
        out.rename(retired)
    staging.rename(out)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
