"""DICOM reading: every common transfer syntax decodes, non-images are skipped, broken files are reported."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from clinfuse.kinds.dicom.headers import FileIssue, ImageHeader, read_header, select_latest
from clinfuse.kinds.dicom.pixels import ImageGeometry, preprocess_file
from pydicom.data import get_testdata_file

# pydicom ships these files inside its wheel: the same MR slice in many transfer syntaxes, plus colour images.
LOSSLESS_MR = ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
               "MR_small_jpeg_ls_lossless.dcm"]  # fmt: skip


def _shipped(name: str) -> Path:
    return Path(get_testdata_file(name))


@pytest.mark.parametrize("name", LOSSLESS_MR)
def test_lossless_syntaxes_preprocess_identically_to_uncompressed(name: str) -> None:
    reference = preprocess_file(_shipped("MR_small.dcm"), 64, None).pixels
    decoded = preprocess_file(_shipped(name), 64, None)
    np.testing.assert_array_equal(decoded.pixels, reference)


def test_jpeg_lossless_and_baseline_decode_colour_images() -> None:
    reference = preprocess_file(_shipped("SC_rgb_rle.dcm"), 32, (128, 256)).pixels.astype(float)
    lossless = preprocess_file(_shipped("SC_rgb_jpeg_gdcm.dcm"), 32, (128, 256))  # JPEG Lossless SV1
    baseline = preprocess_file(_shipped("SC_rgb_jpeg_dcmtk.dcm"), 32, (128, 256))  # JPEG Baseline, lossy
    assert "Lossless" in lossless.transfer_syntax and "Baseline" in baseline.transfer_syntax
    np.testing.assert_allclose(lossless.pixels.astype(float), reference, atol=2e-3)
    assert np.abs(baseline.pixels.astype(float) - reference).mean() < 0.03


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "JPEG2000.dcm", "JPEGLSNearLossless_16.dcm"])
def test_lossy_syntaxes_decode(name: str) -> None:
    result = preprocess_file(_shipped(name), 64, None)
    assert result.pixels.shape == (64, 64)
    assert float(result.pixels.min()) >= 0.0 and float(result.pixels.max()) <= 1.0
    assert result.pixels.astype(float).std() > 0.01


def test_a_corrupt_stream_is_reported_not_raised() -> None:
    from clinfuse.kinds.dicom.ingest import _preprocess
    from clinfuse.kinds.dicom.scan import decode_all
    from clinfuse.platform.ingest.context import IngestContext
    from clinfuse.platform.security import Pseudonymiser

    context = IngestContext(pseudonymise=Pseudonymiser(None, False), scratch=Path("."), previous=None)
    # pydicom ships JPEG-lossy.dcm with a damaged JPEG stream (a misplaced marker segment)
    [(image, reason)] = decode_all(_preprocess, [(_shipped("JPEG-lossy.dcm"), 64, None)], context, "decode")
    assert image is None
    assert reason.startswith("pixel decoding failed")


def test_monochrome1_is_inverted_to_match_monochrome2(tmp_path: Path) -> None:
    source = pydicom.dcmread(_shipped("MR_small.dcm"))
    stored = source.pixel_array.astype(np.int32)
    top = int(stored.max())
    inverted = source.copy()
    inverted.PhotometricInterpretation = "MONOCHROME1"
    inverted.PixelData = (top - stored).astype(source.pixel_array.dtype).tobytes()
    inverted.save_as(tmp_path / "mono1.dcm")
    for ds in (source, inverted):
        ds.WindowCenter, ds.WindowWidth = top / 2, top
    source.save_as(tmp_path / "mono2.dcm")
    inverted.save_as(tmp_path / "mono1.dcm")
    mono2 = preprocess_file(tmp_path / "mono2.dcm", 64, None).pixels.astype(float)
    mono1 = preprocess_file(tmp_path / "mono1.dcm", 64, None).pixels.astype(float)
    np.testing.assert_allclose(mono1, mono2, atol=2e-3)


def test_non_images_are_skipped_and_broken_files_fail(tmp_path: Path) -> None:
    for name in ("rtplan.dcm", "reportsi.dcm", "MR_truncated.dcm", "MR_small.dcm"):
        shutil.copy(_shipped(name), tmp_path / name)
    (tmp_path / "notes.txt").write_text("not dicom")
    data = _shipped("MR_small_RLE.dcm").read_bytes()
    (tmp_path / "cut_rle.dcm").write_bytes(data[: len(data) * 2 // 3])
    outcomes = {p.name: read_header(p, tmp_path, None) for p in sorted(tmp_path.iterdir())}
    assert isinstance(outcomes["MR_small.dcm"], ImageHeader)
    for name, reason in [("rtplan.dcm", "RT Plan"), ("reportsi.dcm", "SR"), ("notes.txt", "not a DICOM file")]:
        issue = outcomes[name]
        assert isinstance(issue, FileIssue) and issue.outcome == "skipped" and reason in issue.reason, issue
    for name in ("MR_truncated.dcm", "cut_rle.dcm"):
        issue = outcomes[name]
        assert isinstance(issue, FileIssue) and issue.outcome == "failed" and "truncated" in issue.reason, issue


def test_latest_image_before_index_time_is_selected() -> None:
    def header(pid: str, day: int, name: str) -> ImageHeader:
        return ImageHeader(path=Path(name), patient_id=pid, acquired=datetime(2150, 1, day))

    headers = [header("a", 1, "old"), header("a", 5, "latest"), header("a", 9, "after"), header("b", 9, "b-after"),
               header("x", 2, "stranger")]  # fmt: skip
    index = {"a": pd.Timestamp(2150, 1, 7), "b": pd.Timestamp(2150, 1, 7)}
    chosen, counts = select_latest(headers, index)
    assert {pid: h.path.name for pid, h in chosen.items()} == {"a": "latest"}
    assert counts == {"not_in_cohort": 1, "after_index_time": 2, "older_than_chosen": 1}


def test_geometry_maps_preprocessed_pixels_back_to_the_source() -> None:
    geometry = ImageGeometry(rows=288, cols=240, size=128)
    assert geometry.offset == (0, 10)
    row, col = geometry.to_source(64.0, 64.0)
    assert row == pytest.approx(144.0) and col == pytest.approx(121.5)
