"""Pixel preprocessing of the dicom kind: the DICOM grey-scale pipeline (Modality LUT, VOI LUT or window with its
VOI LUT Function, MONOCHROME1), colour to luminance, and the frame rules of multi-frame objects.

Real files are those pydicom ships; the cases none of them covers (VOI LUT Sequence, Modality LUT Sequence, SIGMOID,
LINEAR_EXACT, enhanced multi-frame functional groups) are built here on real pixels or closed-form ramps.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pydicom
import pytest
from clinfuse.kinds.dicom.pixels import pick_frame, preprocess_dataset, preprocess_file, to_unit_range
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian


def _shipped(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file(name))


def _grey(stored: np.ndarray, bits_stored: int = 12, photometric: str = "MONOCHROME2", **attributes) -> Dataset:
    """A grey-scale dataset holding `stored` ((R, C) or (F, R, C)), written and read back like a real file."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(stored, photometric, bits_stored)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return _reread(ds)


def _reread(ds: Dataset) -> pydicom.Dataset:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    buffer.seek(0)
    return pydicom.dcmread(buffer, force=True)


def _ramp(low: int, high: int) -> np.ndarray:
    return np.arange(low, high, dtype=np.uint16).reshape(1, -1)


def _lut_item(entries: int, first: int, bits: int, data: np.ndarray) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [entries, first, bits]
    item.add_new("LUTData", "OW", data.astype("<u2").tobytes())
    return item


def _unit(ds: pydicom.Dataset, window: tuple[float, float] | None = None, index: int = 0) -> np.ndarray:
    return to_unit_range(ds, ds.pixel_array, window, index)


def _stored_range(ds: pydicom.Dataset) -> tuple[float, float]:
    """The range DICOM windows map onto: the stored value range, through the rescale when there is one."""
    bits = int(ds.BitsStored)
    low, high = (0, 2**bits - 1) if ds.PixelRepresentation == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    return low * slope + intercept, high * slope + intercept


@pytest.mark.parametrize(("name", "index"), [("MR_small.dcm", 0), ("693_J2KI.dcm", 0), ("examples_overlay.dcm", 1)])
def test_header_window_is_pydicoms_scaled_to_its_output_range(name: str, index: int) -> None:
    ds = _shipped(name)  # MR: window alone; J2KI: signed with rescale; overlay: two windows
    low, high = _stored_range(ds)
    expected = (apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=index) - low) / (high - low)
    np.testing.assert_allclose(_unit(ds, index=index), expected, atol=1e-6)


def test_linear_window_edges_follow_dicom() -> None:
    ds = _grey(_ramp(0, 256), WindowCenter=100, WindowWidth=51)  # LINEAR: (x - 99.5) / 50 + 0.5, outside clipped
    unit = _unit(ds)[0]
    assert unit[74] == 0.0 and unit[125] == 1.0
    np.testing.assert_allclose(unit[75:125], (np.arange(75, 125) - 99.5) / 50 + 0.5, atol=1e-6)


def test_linear_exact_window_edges_are_center_plus_minus_half_width() -> None:
    ds = _grey(_ramp(0, 256), WindowCenter=100, WindowWidth=50, VOILUTFunction="LINEAR_EXACT")
    unit = _unit(ds)[0]
    assert unit[75] == 0.0 and unit[100] == pytest.approx(0.5) and unit[125] == 1.0


def test_sigmoid_centre_maps_to_half() -> None:
    ds = _grey(_ramp(0, 4096), WindowCenter=2000, WindowWidth=400, VOILUTFunction="SIGMOID")
    unit = _unit(ds)[0]
    x = np.arange(4096)
    np.testing.assert_allclose(unit, 1 / (1 + np.exp(-4 * (x - 2000) / 400)), atol=1e-6)
    assert unit[2000] == pytest.approx(0.5)


def test_window_index_picks_a_window_and_falls_back_to_the_first() -> None:
    ds = _grey(_ramp(0, 1024), WindowCenter=[200, 700], WindowWidth=[101, 201])
    second = (np.arange(1024) - 699.5) / 200 + 0.5
    np.testing.assert_allclose(_unit(ds, index=1)[0], np.clip(second, 0, 1), atol=1e-6)
    np.testing.assert_array_equal(_unit(ds, index=5), _unit(ds, index=0))


def test_an_invalid_header_window_counts_as_absent() -> None:
    stored = _ramp(0, 1000)
    ds = _grey(stored, WindowCenter=500, WindowWidth=0)  # LINEAR needs a width of at least 1
    np.testing.assert_array_equal(_unit(ds), _unit(_grey(stored)))


def test_voi_lut_sequence_applies_after_the_rescale_and_scales_by_its_bit_depth() -> None:
    ds = _shipped("CT_small.dcm")  # stored 128..2191, rescale -1024: HU -896..1167
    gamma = (np.linspace(0, 1, 4096) ** 0.5 * 4095).round()
    ramp = np.linspace(0, 65535, 2048).round()
    ds.VOILUTSequence = [_lut_item(4096, -1024, 12, gamma), _lut_item(2048, -500, 16, ramp)]
    ds.WindowCenter, ds.WindowWidth = 40, 400  # a LUT wins over a window in the header (pydicom's preference)
    ds = _reread(ds)
    hu = ds.pixel_array.astype(np.int64) - 1024
    np.testing.assert_allclose(_unit(ds), gamma[np.clip(hu + 1024, 0, 4095)] / 4095, atol=1e-6)
    np.testing.assert_allclose(_unit(ds, index=1), ramp[np.clip(hu + 500, 0, 2047)] / 65535, atol=1e-6)


def test_configured_window_wins_over_the_header_and_is_in_modality_units() -> None:
    ds = _shipped("CT_small.dcm")
    ds.VOILUTSequence = [_lut_item(4096, -1024, 12, np.arange(4096))]
    ds.WindowCenter, ds.WindowWidth = 1000, 10
    ds = _reread(ds)
    hu = ds.pixel_array.astype(np.float64) - 1024
    np.testing.assert_allclose(_unit(ds, window=(40, 400)), np.clip((hu + 160) / 400, 0, 1), atol=1e-6)
    assert "VOILUTFunction" not in ds and ds.WindowCenter == 1000  # the caller's dataset is left as it was


def test_modality_lut_sequence_feeds_the_window() -> None:
    lut = (np.arange(4096) * 16).astype(np.uint16)
    ds = _grey(
        _ramp(0, 4096),
        ModalityLUTSequence=[_lut_item(4096, 0, 16, lut)],
        WindowCenter=32768.5,
        WindowWidth=32768,
        VOILUTFunction="LINEAR_EXACT",
    )
    np.testing.assert_allclose(_unit(ds)[0], np.clip((lut - 16384.5) / 32768, 0, 1), atol=1e-6)


def test_monochrome1_is_inverted() -> None:
    stored = np.random.default_rng(0).integers(0, 4096, (16, 16), dtype=np.uint16)
    for header in ({"WindowCenter": 2048, "WindowWidth": 1000}, {}):
        mono2, mono1 = _grey(stored, **header), _grey(stored, photometric="MONOCHROME1", **header)
        np.testing.assert_allclose(_unit(mono1), 1 - _unit(mono2), atol=1e-6)


def test_rgb_becomes_luminance_and_ignores_the_window() -> None:
    ds = _shipped("SC_rgb_rle.dcm")
    expected = ds.pixel_array.astype(np.float64) @ [0.299, 0.587, 0.114] / 255
    np.testing.assert_allclose(_unit(ds), expected, atol=1e-5)
    np.testing.assert_array_equal(_unit(ds, window=(10, 5)), _unit(ds))


def test_ybr_is_decoded_to_rgb_before_luminance() -> None:
    rgb, ybr = _shipped("SC_rgb_rle.dcm"), _shipped("SC_ybr_full_422_uncompressed.dcm")  # the same picture
    assert ybr.PhotometricInterpretation == "YBR_FULL_422"
    np.testing.assert_allclose(_unit(ybr), _unit(rgb), atol=0.02)
    frames = _shipped("examples_ybr_color.dcm")  # 30 JPEG frames
    assert _unit(frames).shape == (30, 240, 320)


def test_palette_colour_goes_through_its_lut() -> None:
    ds = _shipped("examples_palette.dcm")  # 16-bit palette entries
    expected = apply_color_lut(ds.pixel_array, ds).astype(np.float64) @ [0.299, 0.587, 0.114] / 65535
    np.testing.assert_allclose(_unit(ds), expected, atol=1e-5)


def test_percentile_range_is_shared_by_all_frames() -> None:
    ds = _shipped("rtdose.dcm")  # 15 frames, no VOI information
    values = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    low, high = np.percentile(values, [0.5, 99.5])
    unit = _unit(ds)
    assert unit.shape == (15, 10, 10)
    np.testing.assert_allclose(unit, np.clip((values - low) / (high - low), 0, 1), atol=1e-5)


def _five_frames() -> Dataset:
    """Frame k is the constant 100 k with one bright pixel at (k, k)."""
    stored = np.repeat(np.arange(5, dtype=np.uint16)[:, None, None] * 100, 8, axis=1).repeat(8, axis=2)
    stored[np.arange(5), np.arange(5), np.arange(5)] = 1000
    return _grey(stored, WindowCenter=500.5, WindowWidth=1001)  # LINEAR: unit = stored / 1000


def test_frame_rules_pick_the_right_frame() -> None:
    ds = _five_frames()
    unit = _unit(ds)
    assert unit.shape == (5, 8, 8)
    assert pick_frame(unit, "first")[7, 7] == pytest.approx(0.0)
    assert pick_frame(unit, "middle")[7, 7] == pytest.approx(0.2)
    projection = pick_frame(unit, "max_intensity")
    assert projection[7, 7] == pytest.approx(0.4)
    np.testing.assert_allclose(np.diag(projection)[:5], 1.0)
    with pytest.raises(ValueError, match="frame rule"):
        pick_frame(unit, "last")
    image = preprocess_dataset(ds, 8, None, frame="max_intensity")
    assert image.frames == 5
    np.testing.assert_allclose(image.pixels.astype(np.float32), projection, atol=1e-3)


def test_single_frame_objects_ignore_the_frame_rule() -> None:
    path = get_testdata_file("MR_small.dcm")
    middle = preprocess_file(path, 32, None)
    assert middle.frames == 1
    for rule in ("first", "max_intensity"):
        np.testing.assert_array_equal(preprocess_file(path, 32, None, 0, rule).pixels, middle.pixels)


def _functional_item(**attributes) -> Dataset:
    item = Dataset()
    for sequence, values in attributes.items():
        inner = Dataset()
        for keyword, value in values.items():
            setattr(inner, keyword, value)
        setattr(item, sequence, [inner])
    return item


def test_enhanced_objects_take_rescale_and_windows_from_functional_groups() -> None:
    stored = np.stack([_ramp(0, 400), _ramp(0, 400) + 100, _ramp(0, 400)]).astype(np.uint16)  # (3, 1, 400)
    per_frame = [
        _functional_item(PixelValueTransformationSequence={"RescaleSlope": 1, "RescaleIntercept": 0}),
        _functional_item(PixelValueTransformationSequence={"RescaleSlope": 1, "RescaleIntercept": -100}),
        _functional_item(
            PixelValueTransformationSequence={"RescaleSlope": 2, "RescaleIntercept": 0},
            FrameVOILUTSequence={"WindowCenter": 400, "WindowWidth": 400, "VOILUTFunction": "LINEAR_EXACT"},
        ),
    ]
    shared = [
        _functional_item(
            FrameVOILUTSequence={"WindowCenter": 200, "WindowWidth": 200, "VOILUTFunction": "LINEAR_EXACT"}
        )
    ]
    ds = _grey(stored, PerFrameFunctionalGroupsSequence=per_frame, SharedFunctionalGroupsSequence=shared)
    unit = _unit(ds)
    x = np.arange(400.0)
    np.testing.assert_allclose(unit[0, 0], np.clip((x - 100) / 200, 0, 1), atol=1e-6)  # shared window
    np.testing.assert_array_equal(unit[1], unit[0])  # the per-frame intercept undoes the offset
    np.testing.assert_allclose(unit[2, 0], np.clip((2 * x - 200) / 400, 0, 1), atol=1e-6)  # per-frame window


def test_an_8_bit_voi_lut_longer_than_256_entries_is_looked_up_without_wrapping() -> None:
    """pydicom 3.0's apply_voi indexes in the LUT's output type; the lookup here must not wrap past entry 255."""
    from clinfuse.platform.demo.dicom_export import window_lut

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword in ("WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.VOILUTSequence = Sequence([window_lut(center=500.0, width=1000.0, bits=8)])
    stored = np.array([[0, 255, 256, 999], [1000, 1200, 500, 750]], dtype=np.int16)
    unit = to_unit_range(ds, stored, None)
    expected = np.clip(stored / 1000.0, 0, 1)
    np.testing.assert_allclose(unit, expected, atol=1 / 255)
