"""Ingest under bad inputs and injected faults: one `error:` line or a counted report entry, never a traceback,
the previous cache untouched and nothing left beside `--out`.

Covers issue 17: manifest paths outside the imaging folder (8a), a full disk (8b), a same-size corruption of an
`.npy` header in the cache (8c), cohorts whose ids match no modality (9a), leftovers of killed ingests (9b).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from clinfuse.kinds.table import TableKind
from pydicom.data import get_testdata_file

SPLITS = ["train", "train", "train", "train", "val", "val", "test", "test"]


def _cohort(root: Path, genomics_prefix: str = "P", link: str = "patient_id_tag") -> Path:
    """8 patients (P0..P7) with their own split; genomics for all, one image each for P0 and P1."""
    rows = "\n".join(f"P{i},{i % 2},2020-01-01,{split}" for i, split in enumerate(SPLITS))
    (root / "cohort.csv").write_text(f"patient_id,label,index_time,split\n{rows}\n")
    values = np.random.default_rng(0).normal(size=(len(SPLITS), 3))
    genomics = pd.DataFrame(values, columns=["g1", "g2", "g3"])
    genomics.insert(0, "patient_id", [f"{genomics_prefix}{i}" for i in range(len(SPLITS))])
    genomics.to_csv(root / "genomics.csv", index=False)
    for pid in ("P0", "P1"):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PatientID = pid
        (root / "imaging").mkdir(exist_ok=True)
        ds.save_as(root / "imaging" / f"{pid}.dcm")
    imaging = "{name: imaging, kind: dicom, path: imaging, image_size: 32}"
    if link == "manifest":
        (root / "manifest.csv").write_text("patient_id,path\nP0,imaging/P0.dcm\nP1,imaging/P1.dcm\n")
        imaging = "{name: imaging, kind: dicom, path: imaging, image_size: 32, link: manifest, manifest: manifest.csv}"
    config = root / "cohort.yaml"
    config.write_text(
        "name: faults\ncohort: {path: cohort.csv, split: split}\nmodalities:\n"
        f"  - {imaging}\n  - {{name: genomics, kind: table, path: genomics.csv}}\n"
    )
    return config


def _ingest(probe, config: Path, cache: Path):
    return probe.run_main(["ingest", "--config", str(config), "--out", str(cache)])


def _hidden_beside(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.parent.iterdir() if p.name.startswith("."))


@pytest.fixture
def built(probe, tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A cohort, its ingested cache, and the cache's snapshot."""
    config = _cohort(tmp_path)
    cache = tmp_path / "out" / "cache"
    outcome = _ingest(probe, config, cache)
    assert outcome.code == 0, outcome.stderr
    return config, cache, probe.snapshot(cache)


# 8a: manifest rows outside the imaging folder ---------------------------------------------------------------


@pytest.mark.parametrize("listed", ["../../etc/passwd", "/etc/passwd", "imaging/escape.dcm", "imaging/P0.dcm/../.."])
def test_a_manifest_path_outside_the_imaging_folder_is_one_error(probe, tmp_path: Path, listed: str) -> None:
    config = _cohort(tmp_path, link="manifest")
    outside = tmp_path / "secret.dcm"
    outside.write_bytes((tmp_path / "imaging" / "P0.dcm").read_bytes())
    (tmp_path / "imaging" / "escape.dcm").symlink_to(outside)  # inside by name, outside once followed
    with (tmp_path / "manifest.csv").open("a") as manifest:
        manifest.write(f"P2,{listed}\n")
    outcome = _ingest(probe, config, tmp_path / "cache")
    probe.assert_user_error(outcome, "manifest.csv", "outside the imaging folder", "line 4")
    assert not (tmp_path / "cache").exists()


def test_a_scanned_symlink_out_of_the_imaging_folder_is_skipped_unread(probe, tmp_path: Path) -> None:
    config = _cohort(tmp_path)
    outside = tmp_path / "elsewhere" / "P2.dcm"
    outside.parent.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID = "P2"
    ds.save_as(outside)
    (tmp_path / "imaging" / "P2.dcm").symlink_to(outside)
    cache = tmp_path / "cache"
    assert _ingest(probe, config, cache).code == 0
    report = json.loads((cache / "ingest_report.json").read_text())["modalities"]["imaging"]
    assert report["skipped"]["files"] == [{"path": "P2.dcm", "reason": "symlink to a file outside the imaging folder"}]
    assert report["patients_present"] == 2


# 8b: a full disk -------------------------------------------------------------------------------------------


def _raising(error: Exception):
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    return fail


ENOSPC, EDQUOT = os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT)


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        ((shutil, "copyfileobj"), OSError(errno.ENOSPC, ENOSPC), ENOSPC),  # images.npy (RowWriter.save copies rows)
        ((pd.DataFrame, "to_parquet"), OSError(errno.ENOSPC, ENOSPC), ENOSPC),  # genomics, then cohort.parquet
        ((Path, "write_text"), OSError(errno.EDQUOT, EDQUOT), EDQUOT),  # report / manifest
        # as a library that wraps the OS error in its own type (polars under PyHealth) reports it
        ((pd.DataFrame, "to_parquet"), RuntimeError(f"write failed: {ENOSPC} (os error 28)"), ENOSPC),
    ],
    ids=["images", "parquet", "manifest-quota", "wrapped"],
)
def test_a_full_disk_is_one_error_and_leaves_the_previous_cache(
    probe, built, monkeypatch: pytest.MonkeyPatch, target: tuple[object, str], error: Exception, message: str
) -> None:
    config, cache, before = built
    (config.parent / "imaging" / "P0.dcm").unlink()  # a changed input: the next ingest rebuilds
    (config.parent / "genomics.csv").write_text((config.parent / "genomics.csv").read_text().replace("0.", "1.", 1))
    monkeypatch.setattr(*target, _raising(error))
    outcome = _ingest(probe, config, cache)
    probe.assert_user_error(outcome, str(cache.parent), "free", message)
    assert probe.snapshot(cache) == before
    assert _hidden_beside(cache) == []


# 8c: same-size corruption inside the cache -----------------------------------------------------------------


def test_a_same_size_npy_header_corruption_is_one_error(probe, built, tmp_path: Path) -> None:
    _config, cache, _before = built
    images = cache / "modalities" / "imaging" / "images.npy"
    content = images.read_bytes()
    assert b"'fortran_order': False" in content
    images.write_bytes(content.replace(b"'fortran_order': False", b"'fortran_order': Flase", 1))
    outcome = probe.run_main(["train", "--cache", str(cache), "--out", str(tmp_path / "run"), "--split"])
    probe.assert_user_error(outcome, "feature cache", "damaged", "images.npy", "rerun `clinfuse ingest`")
    assert not (tmp_path / "run").exists()


def test_an_unreadable_cache_manifest_is_one_error(probe, built, tmp_path: Path) -> None:
    _config, cache, _before = built
    (cache / "manifest.json").write_text("{not json")
    outcome = probe.run_main(["train", "--cache", str(cache), "--out", str(tmp_path / "run"), "--split"])
    probe.assert_user_error(outcome, "feature cache", "rerun `clinfuse ingest`")


def test_reingesting_repairs_a_damaged_cache(probe, built) -> None:
    config, cache, before = built
    parquet = cache / "cohort.parquet"
    content = bytearray(parquet.read_bytes())
    content[len(content) // 2] ^= 0xFF
    parquet.write_bytes(bytes(content))
    assert _ingest(probe, config, cache).code == 0
    assert probe.snapshot(cache)["cohort.parquet"] == before["cohort.parquet"]


# 9a: cohorts that match no modality ------------------------------------------------------------------------


def test_ids_matching_no_modality_fail_the_ingest_before_anything_is_swapped_in(probe, built) -> None:
    config, cache, before = built
    cohort = config.parent / "cohort.csv"
    cohort.write_text(cohort.read_text().replace("\nP", "\nQ"))  # the cohort renumbered: no modality id matches
    outcome = _ingest(probe, config, cache)
    probe.assert_user_error(outcome, "no patient", "any modality", "patient_id", "genomics: 8 of 8 rows")
    assert probe.snapshot(cache) == before
    assert _hidden_beside(cache) == []


def test_a_training_modality_without_patients_is_one_error(probe, tmp_path: Path) -> None:
    config = _cohort(tmp_path, genomics_prefix="X")
    outcome = _ingest(probe, config, tmp_path / "cache")
    probe.assert_user_error(outcome, "modality 'genomics'", "no patient", "8 of 8 rows")
    assert not (tmp_path / "cache").exists()


def test_a_scoring_modality_without_patients_is_a_counted_warning(tmp_path: Path) -> None:
    from clinfuse.platform.config import load_cohort_config
    from clinfuse.platform.ingest.runner import ingest_config

    config_path = _cohort(tmp_path, genomics_prefix="X")
    alignment = {"features": ["g1", "g2", "g3"], "median": [0.0] * 3, "mean": [0.0] * 3, "std": [1.0] * 3}
    config = load_cohort_config(config_path, labels_required=False)
    ingest_config(config, tmp_path / "cache", frozen_alignments={"genomics": alignment})
    report = json.loads((tmp_path / "cache" / "ingest_report.json").read_text())
    assert report["modalities"]["genomics"]["patients_present"] == 0
    assert len(report["warnings"]) == 1 and "modality 'genomics'" in report["warnings"][0]


# 9b: leftovers of killed ingests ---------------------------------------------------------------------------


def test_leftovers_of_dead_ingests_are_swept_and_a_live_one_is_left(
    probe, built, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, cache, _before = built
    dead = cache.parent / f".{cache.name}.staging-dead0000"
    (dead / "modalities").mkdir(parents=True)
    (dead / ".writer.lock").touch()
    live = cache.parent / f".{cache.name}.staging-live0000"
    live.mkdir()
    lock = os.open(live / ".writer.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another ingest of the same cache, still running
    scratches: list[Path] = []
    table = TableKind.ingest

    def spy(self, modality, cohort, out, context):
        scratches.append(context.scratch)
        return table(self, modality, cohort, out, context)

    monkeypatch.setattr(TableKind, "ingest", spy)
    (config.parent / "genomics.csv").write_text((config.parent / "genomics.csv").read_text().replace("0.", "1.", 1))
    try:
        assert _ingest(probe, config, cache).code == 0
        assert _hidden_beside(cache) == [live.name]
    finally:
        os.close(lock)
    [scratch] = scratches
    assert scratch.parent.name.startswith(f".{cache.name}.staging-"), "scratch lives inside the staging folder"


def test_an_up_to_date_ingest_also_sweeps_dead_leftovers(probe, built) -> None:
    config, cache, before = built
    dead = cache.parent / f".{cache.name}.staging-dead0000"
    dead.mkdir()
    (dead / ".writer.lock").touch()
    outcome = _ingest(probe, config, cache)
    assert outcome.code == 0 and "up to date" in outcome.stdout
    assert _hidden_beside(cache) == []
    assert probe.snapshot(cache) == before
