"""Ingest a `dicom` modality: the header pass, then one 2D image per patient into images.npy, or (`volume: true`)
one 3D volume per patient (`volume_ingest.py`).

Decoded images are reused from the previous cache when the selected file's content digest and the preprocessing
(settings and pixel code) are unchanged, so adding one file to a folder decodes one file. Per-file problems are
recorded and never stop the run.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from clinfuse.kinds.dicom import pixels
from clinfuse.kinds.dicom.config import DicomModality
from clinfuse.kinds.dicom.headers import FileIssue, select_latest
from clinfuse.kinds.dicom.pixels import PreprocessedImage, preprocess_file
from clinfuse.kinds.dicom.scan import (
    FolderScan,
    decode_all,
    file_sections,
    flag_unimaged,
    input_digest,
    preprocessing_key,
    relative,
    scan_folder,
)
from clinfuse.kinds.dicom.store import IMAGE_INDEX_FILE, IMAGES_FILE, PreviousRows, RowWriter
from clinfuse.platform.ingest.cohort_table import Cohort
from clinfuse.platform.ingest.context import IngestContext, ModalityOutput


def ingest_dicom(modality: DicomModality, cohort: Cohort, out: Path, context: IngestContext) -> ModalityOutput:
    scan = scan_folder(modality, context)
    if modality.volume:
        from clinfuse.kinds.dicom.volume_ingest import ingest_volumes

        return ingest_volumes(modality, cohort, out, context, scan)
    return _ingest_images(modality, cohort, out, context, scan)


def _ingest_images(
    modality: DicomModality, cohort: Cohort, out: Path, context: IngestContext, scan: FolderScan
) -> ModalityOutput:
    issues = list(scan.issues)
    chosen, selection = select_latest(scan.headers, cohort.index_times())
    ordered = [pid for pid in cohort.patient_ids if pid in chosen]
    digests = {pid: input_digest(context, chosen[pid].path) for pid in ordered}
    key = preprocessing_key(
        {"size": modality.image_size, "window": modality.window, "window_index": modality.window_index,
         "frame": modality.frame},
        Path(pixels.__file__),
    )  # fmt: skip
    reusable = PreviousRows(context.previous, IMAGES_FILE, IMAGE_INDEX_FILE, key)
    to_decode = [pid for pid in ordered if digests[pid] not in reusable]
    arguments = [(chosen[pid].path, modality.image_size, modality.window, modality.window_index, modality.frame)
                 for pid in to_decode]  # fmt: skip
    outcomes = decode_all(_preprocess, arguments, context, f"{modality.name}: decode")  # lazily, in to_decode order
    writer = RowWriter(context.scratch, modality.name, (modality.image_size, modality.image_size))
    present, index, patient_issues, reused = [], [], {}, 0
    for pid in ordered:
        if digests[pid] in reusable:
            image, meta = reusable.get(digests[pid])
            reused += 1
        else:
            result, reason = next(outcomes)
            if result is None:
                patient_issues[pid] = reason
                issues.append(FileIssue(relative(chosen[pid].path, scan.root), "failed", reason, pid))
                continue
            image = result.pixels
            meta = {"rows": result.geometry.rows, "cols": result.geometry.cols, "frames": result.frames,
                    "transfer_syntax": result.transfer_syntax, "photometric": result.photometric}  # fmt: skip
        writer.append(image)
        present.append(pid)
        index.append({"digest": digests[pid], **meta})
    outcomes.close()  # stops handing work to the cluster
    flag_unimaged(issues, cohort.patient_ids, present, patient_issues)

    out.mkdir(parents=True, exist_ok=True)
    writer.save(out / IMAGES_FILE)
    (out / IMAGE_INDEX_FILE).write_text(json.dumps({"image_size": modality.image_size, "preprocessing": key,
                                                    "rows": index}))  # fmt: skip
    report = {
        **file_sections(scan.files, issues),
        "patients_present": len(present),
        "images_decoded": len(to_decode),
        "images_reused": reused,
        "multi_frame_images": sum(row.get("frames", 1) > 1 for row in index),
        "selection": selection,
        "transfer_syntaxes": dict(Counter(row["transfer_syntax"] for row in index)),
        "photometric": dict(Counter(row["photometric"] for row in index)),
    }
    return ModalityOutput(present_ids=present, report=report, patient_issues=patient_issues)


def _preprocess(arguments: tuple) -> PreprocessedImage:
    return preprocess_file(*arguments)
