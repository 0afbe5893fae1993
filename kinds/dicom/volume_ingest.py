"""Ingest a `volume: true` dicom modality: per patient the latest qualifying series before the index time,
assembled and resampled (`volume.py`) into a memory-mapped volume store (`store.py`).

Every file is accounted for: used in a patient's volume, set aside by the selection (counted per series in
`selection`), or listed in `skipped`/`failed` with its reason (too few slices, a missing slice, mixed
orientations, a decode failure). Volumes are written row by row (`store.RowWriter`), so memory does not grow with
the cohort.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from clinfuse.kinds.dicom import pixels, volume
from clinfuse.kinds.dicom.config import DicomModality
from clinfuse.kinds.dicom.headers import FileIssue, ImageHeader, select_latest
from clinfuse.kinds.dicom.scan import (
    FolderScan,
    decode_all,
    file_sections,
    flag_unimaged,
    input_digest,
    preprocessing_key,
    relative,
)
from clinfuse.kinds.dicom.store import VOLUME_INDEX_FILE, VOLUMES_FILE, PreviousRows, RowWriter
from clinfuse.kinds.dicom.volume import (
    PreprocessedVolume,
    SeriesCandidate,
    assemble_volume,
    geometry_problem,
    group_series,
    issues_for,
)
from clinfuse.platform.ingest.cohort_table import Cohort
from clinfuse.platform.ingest.context import IngestContext, ModalityOutput
from clinfuse.platform.ingest.fingerprint import combine


def ingest_volumes(
    modality: DicomModality, cohort: Cohort, out: Path, context: IngestContext, scan: FolderScan
) -> ModalityOutput:
    issues = list(scan.issues)
    candidates, too_small = group_series(scan.headers, modality.min_slices)
    owners = {header.path: header.patient_id for header in scan.headers}
    issues += [FileIssue(relative(path, scan.root), "skipped", reason, owners[path]) for path, reason in too_small]
    usable, excluded = [], Counter()
    for candidate in candidates:
        problem = geometry_problem(candidate, modality.max_gap_ratio)
        if problem is None:
            usable.append(candidate)
        else:
            excluded[problem.split(":", 1)[0]] += 1
            issues += issues_for(candidate, scan.root, "skipped", f"series not used: {problem}")
    chosen, selection = select_latest(usable, cohort.index_times())
    ordered = [pid for pid in cohort.patient_ids if pid in chosen]
    digests = {pid: combine([input_digest(context, h.path) for h in chosen[pid].files]) for pid in ordered}
    key = preprocessing_key(
        {"window": modality.window, "window_index": modality.window_index, "spacing": modality.voxel_spacing,
         "shape": modality.volume_shape},
        Path(pixels.__file__), Path(volume.__file__),
    )  # fmt: skip
    reusable = PreviousRows(context.previous, VOLUMES_FILE, VOLUME_INDEX_FILE, key)
    to_decode = [pid for pid in ordered if digests[pid] not in reusable]

    out.mkdir(parents=True, exist_ok=True)
    writer = RowWriter(context.scratch, modality.name, modality.volume_shape)
    arguments = [(chosen[pid].files, modality) for pid in to_decode]
    outcomes = decode_all(_assemble, arguments, context, f"{modality.name}: volumes")  # lazily, in to_decode order
    present, index, patient_issues, reused = [], [], {}, 0
    for pid in ordered:
        if digests[pid] in reusable:
            voxels, meta = reusable.get(digests[pid])
            reused += 1
        else:
            result, reason = next(outcomes)
            if result is None:
                patient_issues[pid] = reason
                issues += issues_for(chosen[pid], scan.root, "failed", reason)
                continue
            voxels, meta = result.voxels, _meta(result)
        writer.append(voxels)
        present.append(pid)
        index.append({"digest": digests[pid], **meta})
    outcomes.close()  # stops handing work to the cluster
    flag_unimaged(issues, cohort.patient_ids, present, patient_issues)
    writer.save(out / VOLUMES_FILE)
    (out / VOLUME_INDEX_FILE).write_text(json.dumps({
        "volume_shape": list(modality.volume_shape), "voxel_spacing": list(modality.voxel_spacing),
        "preprocessing": key, "rows": index,
    }))  # fmt: skip
    return ModalityOutput(
        present_ids=present,
        report=_report(
            scan, issues, candidates, usable, excluded, selection, chosen, present, index, to_decode, reused
        ),
        patient_issues=patient_issues,
    )


def _assemble(arguments: tuple[tuple[ImageHeader, ...], DicomModality]) -> PreprocessedVolume:
    return assemble_volume(*arguments)


def _meta(result: PreprocessedVolume) -> dict:
    return {"affine": result.affine, "slices": result.slices, "layout": result.layout,
            "transfer_syntax": result.transfer_syntax, "photometric": result.photometric}  # fmt: skip


def _report(
    scan: FolderScan,
    issues: list[FileIssue],
    candidates: list[SeriesCandidate],
    usable: list[SeriesCandidate],
    excluded: Counter,
    selection: dict,
    chosen: dict[str, SeriesCandidate],
    present: list[str],
    index: list[dict],
    decoded: list[str],
    reused: int,
) -> dict:
    slices = [row["slices"] for row in index]
    return {
        **file_sections(scan.files, issues),
        "patients_present": len(present),
        "series_found": len(candidates),
        "series_usable": len(usable),
        "series_excluded": dict(excluded),
        "files_used": sum(len(chosen[pid].files) for pid in present),
        "volumes_decoded": len(decoded),
        "volumes_reused": reused,
        "selection": selection,
        "layouts": dict(Counter(row["layout"] for row in index)),
        "slices": {"min": min(slices), "median": statistics.median(slices), "max": max(slices)} if slices else {},
        "transfer_syntaxes": dict(Counter(row["transfer_syntax"] for row in index)),
    }
