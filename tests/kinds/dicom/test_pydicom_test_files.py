"""No file can stop a batch: every file pydicom ships as test data (odd syntaxes, truncated and corrupt objects,
DICOMDIRs, JSON, an ICC profile, a gzip) is ingested in one `clinfuse ingest` run, as a 2D and as a volume modality
of the same folder.

The 2D modality links each file to a patient of its own, so each file's fate is readable from the cache: its
patient has an image, or the report lists the file as skipped or failed with a reason, never both and never
neither. The volume modality needs several slices per patient, so its manifest links the files of each series
folder of pydicom's `dicomdirtests` (real CT and MR series) to one patient and every other file to a patient of its
own; a file is then used in its patient's volume or listed. The run must exit 0 without a traceback.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pydicom.data
import pytest

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
MODALITIES = ("flat", "volume")
MIN_SLICES = 5  # dicomdirtests/98892001/CT5N, pydicom's one intact series, has 5 slices
CONTRADICTION = re.compile(r"not an image: .*Image Storage")  # an image object's SOP class, called not an image


@dataclass(frozen=True)
class Ingested:
    """One CLI ingest of all of pydicom's test files."""

    code: int
    stdout: str
    stderr: str
    patient_of: dict[str, dict[str, str]]  # modality -> file path relative to the imaging folder -> patient id
    report: dict  # ingest_report.json ({} when none was written)
    cohort: pd.DataFrame  # cohort.parquet (empty when none was written)
    config: Path
    cache: Path


def _series_folder(path: str) -> str | None:
    """'dicomdirtests/<study>/<series>' for a file of one of pydicom's series folders, else None."""
    parts = path.split("/")
    return "/".join(parts[:3]) if len(parts) == 4 and parts[0] == "dicomdirtests" and parts[1].isdigit() else None


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    root = tmp_path_factory.mktemp("pydicom-test-files")
    imaging = root / "test_files"  # a copy: the files must lie inside the modality's folder (3 MB)
    shutil.copytree(TEST_FILES, imaging)
    files = sorted(str(p.relative_to(imaging)) for p in imaging.rglob("*") if p.is_file())
    flat = {path: f"P{i:04d}" for i, path in enumerate(files, start=1)}
    series = sorted({folder for path in files if (folder := _series_folder(path))})
    volume = {path: f"S{series.index(f) + 1:02d}" if (f := _series_folder(path)) else flat[path] for path in files}
    patient_of = {"flat": flat, "volume": volume}
    for name, links in patient_of.items():
        pd.DataFrame({"patient_id": list(links.values()), "path": [f"test_files/{p}" for p in links]}).to_csv(
            root / f"{name}.csv", index=False
        )
    patients = sorted(set(flat.values()) | set(volume.values()))
    cohort = pd.DataFrame(
        {"patient_id": patients, "label": [i % 2 for i in range(len(patients))],
         "index_time": "2100-01-01"}  # after every file's date: no file is set aside as taken after the index time
    )  # fmt: skip
    cohort.to_csv(root / "cohort.csv", index=False)
    common = "kind: dicom, path: test_files, link: manifest, unmarked_secondary_capture: keep"
    (root / "cohort.yaml").write_text(
        "name: pydicom-test-files\ncohort: {path: cohort.csv}\npseudonymise_ids: false\nmodalities:\n"
        f"  - {{name: flat, {common}, manifest: flat.csv, image_size: 32}}\n"
        f"  - {{name: volume, {common}, manifest: volume.csv, volume: true, volume_shape: [16, 16, 16], "
        f"min_slices: {MIN_SLICES}}}\n"
    )
    cache = root / "cache"
    exe = Path(sys.executable).parent / "clinfuse"
    done = subprocess.run(
        [str(exe), "ingest", "--config", str(root / "cohort.yaml"), "--out", str(cache), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads((cache / "ingest_report.json").read_text()) if (cache / "ingest_report.json").is_file() else {}
    table = pd.read_parquet(cache / "cohort.parquet") if (cache / "cohort.parquet").is_file() else pd.DataFrame()
    return Ingested(done.returncode, done.stdout, done.stderr, patient_of, report, table, root / "cohort.yaml", cache)


def _listed(report: dict, name: str) -> dict[str, list[tuple[str, str]]]:
    """Each file the modality's report lists as skipped or failed -> [(outcome, reason), ...]."""
    listed: dict[str, list[tuple[str, str]]] = {}
    for outcome in ("skipped", "failed"):
        for entry in report["modalities"][name][outcome]["files"]:
            listed.setdefault(entry["path"], []).append((outcome, entry["reason"]))
    return listed


def _fates(ingested: Ingested, name: str) -> dict[str, tuple[str, str]]:
    """Each file -> ("used", "") or (outcome, reason), asserting that each file has exactly one fate.

    A file not listed is used by its patient's image (2D) or volume, so its patient must be present; the number of
    such files must equal what the modality reports as used (2D: one file per present patient)."""
    report = ingested.report["modalities"][name]
    assert not any(report["selection"].values()), f"{name}: files set aside by the selection: {report['selection']}"
    patient_of = ingested.patient_of[name]
    present = dict(zip(ingested.cohort["patient"], ingested.cohort[f"present_{name}"], strict=True))
    listed = _listed(ingested.report, name)
    unknown = sorted(set(listed) - set(patient_of))
    assert not unknown, f"{name}: the report lists files that are not in the manifest: {unknown[:5]}"
    fates, problems = {}, []
    for path, patient in patient_of.items():
        entries = listed.get(path, [])
        if len(entries) > 1:
            problems.append(f"{path}: listed {len(entries)} times {entries}")
        elif entries:
            outcome, reason = entries[0]
            fates[path] = (outcome, reason)
            if not reason.strip():
                problems.append(f"{path}: {outcome} without a reason")
        elif present[patient]:
            fates[path] = ("used", "")
        else:
            problems.append(f"{path}: neither listed nor used (its patient has no {name} data)")
    assert not problems, f"{name}: {len(problems)} file(s) not accounted for exactly once:\n" + "\n".join(problems)
    used = sum(outcome == "used" for outcome, _ in fates.values())
    assert used == report.get("files_used", report["patients_present"]), f"{name}: {used} files unlisted, {report}"
    return fates


def _summary(name: str, fates: dict[str, tuple[str, str]]) -> str:
    outcomes = Counter(outcome for outcome, _ in fates.values())
    reasons = Counter((outcome, reason) for outcome, reason in fates.values() if outcome != "used")
    lines = [f"{name}: " + ", ".join(f"{outcomes[o]} {o}" for o in ("used", "skipped", "failed"))]
    lines += [f"  {count:4d} {outcome}: {reason[:150]}" for (outcome, reason), count in sorted(reasons.items())]
    return "\n".join(lines)


def test_the_ingest_of_every_pydicom_test_file_exits_0_without_a_traceback(ingested: Ingested) -> None:
    assert "Traceback" not in ingested.stderr + ingested.stdout, ingested.stderr[-4000:]
    assert ingested.code == 0, f"exit {ingested.code}; stderr:\n{ingested.stderr[-4000:]}"
    assert len(ingested.patient_of["flat"]) == len([p for p in TEST_FILES.rglob("*") if p.is_file()]) > 100


@pytest.mark.parametrize("name", MODALITIES)
def test_every_file_is_used_or_listed_with_a_reason_exactly_once(ingested: Ingested, name: str) -> None:
    assert ingested.code == 0, f"exit {ingested.code}; stderr:\n{ingested.stderr[-4000:]}"
    report = ingested.report["modalities"][name]
    assert report["files_seen"] == len(ingested.patient_of[name])
    fates = _fates(ingested, name)
    print("\n" + _summary(name, fates))
    assert report["patients_present"] > 0
    for outcome in ("skipped", "failed"):
        assert report[outcome]["count"] == sum(o == outcome for o, _ in fates.values())


def test_known_files_land_where_they_must(ingested: Ingested) -> None:
    assert ingested.code == 0, f"exit {ingested.code}; stderr:\n{ingested.stderr[-4000:]}"
    fates = _fates(ingested, "flat")
    for path in ("README.txt", "crayons.icc", "zipMR.gz", "test1.json", "no_meta.dcm", "ExplVR_LitEndNoMeta.dcm"):
        assert fates[path] == ("skipped", "not a DICOM file"), path  # no preamble and no meta: not DICOM Part 10
    for path in ("dicomdirtests/DICOMDIR", "rtplan.dcm", "test-SR.dcm", "reportsi.dcm", "waveform_ecg.dcm"):
        outcome, reason = fates[path]
        assert outcome == "skipped" and reason.startswith("not an image"), (path, fates[path])
    outcome, reason = fates["MR_truncated.dcm"]
    assert outcome == "failed" and "truncated" in reason, fates["MR_truncated.dcm"]
    outcome, reason = fates["badVR.dcm"]  # NumberOfFrames '1A': the reason names the attribute at fault
    assert outcome == "failed" and "frames" in reason.lower(), fates["badVR.dcm"]
    # pydicom's README: corrupt JPEG streams (JPGExtended.dcm is the fixed version of JPEG-lossy.dcm)
    for path in ("JPEG-lossy.dcm", "JPEG2000-embedded-sequence-delimiter.dcm"):
        assert fates[path][0] == "failed", (path, fates[path])
    for path in ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPGExtended.dcm",
                 "SC_rgb_jpeg_dcmtk.dcm", "MR_small_bigendian.dcm", "MR_small_padded.dcm", "rtdose.dcm",
                 "SC_ybr_full_422_uncompressed.dcm"):  # fmt: skip
        assert fates[path] == ("used", ""), (path, fates[path])
    volume = _fates(ingested, "volume")
    series = [path for path in volume if path.startswith("dicomdirtests/98892001/CT5N/")]
    assert len(series) == MIN_SLICES and all(volume[path] == ("used", "") for path in series), volume


@pytest.mark.parametrize("name", MODALITIES)
def test_no_reason_calls_an_image_object_not_an_image(ingested: Ingested, name: str) -> None:
    """A CT or MR object without pixel data is damaged or stripped; "not an image: CT Image Storage" says the
    opposite of what the file is."""
    assert ingested.code == 0, f"exit {ingested.code}; stderr:\n{ingested.stderr[-4000:]}"
    contradictory = {p: r for p, (_, r) in _fates(ingested, name).items() if CONTRADICTION.match(r)}
    assert not contradictory, contradictory


def test_a_dask_cluster_decodes_every_file_as_this_process_does(ingested: Ingested, tmp_path: Path) -> None:
    """`clinfuse ingest --scheduler` hands the decoding to the cluster's workers (here threads of this process, on
    loopback): the cache's arrays, rows and file reports equal the one-process ingest's, file by file."""
    import numpy as np
    import torch
    from dask.distributed import LocalCluster

    threads = torch.get_num_threads()  # the workers set one torch thread in the process they run in: this one
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                          dashboard_address=None) as cluster:  # fmt: skip
            cache = tmp_path / "cache"
            done = subprocess.run(
                [str(Path(sys.executable).parent / "clinfuse"), "ingest", "--config", str(ingested.config),
                 "--out", str(cache), "--scheduler", cluster.scheduler_address],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            on_cluster = "run_batch" in cluster.scheduler.task_prefixes  # the name of DaskWorkers' tasks
    finally:
        torch.set_num_threads(threads)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert on_cluster, "no decoding task ran on the cluster"
    report = json.loads((cache / "ingest_report.json").read_text())
    for name, array in (("flat", "images"), ("volume", "volumes")):
        ours, theirs = report["modalities"][name], ingested.report["modalities"][name]
        for section in ("files_seen", "files_read", "skipped", "failed", "patients_present"):
            assert ours[section] == theirs[section], f"{name}: {section} differs"
        assert np.array_equal(
            np.load(cache / "modalities" / name / f"{array}.npy"),
            np.load(ingested.cache / "modalities" / name / f"{array}.npy"),
        ), f"{name}: decoded {array} differ"
