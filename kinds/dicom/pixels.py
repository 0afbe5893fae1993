"""Second DICOM pass: decode pixels and preprocess them into model-ready arrays.

Decoding goes through pydicom's pixel backends (native, RLE, and the pylibjpeg/pyjpegls plugins for JPEG,
JPEG-LS and JPEG 2000). Grey-scale frames then follow the DICOM grey-scale pipeline with pydicom's own functions:
the Modality LUT (Modality LUT Sequence, or Rescale Slope/Intercept), then the VOI stage (the configured window,
else the header's VOI LUT Sequence or window with its VOI LUT Function, else the 0.5-99.5 percentile range),
scaled to [0, 1] by that stage's output range, and MONOCHROME1 inverted so dense tissue is always bright.
Enhanced multi-frame objects keep rescale and windows in functional groups (per frame or shared); they are read
from there. Colour images are reduced to luminance. A multi-frame object gives one 2D image by a frame rule; the
longest side is then resized and the image padded to a square (MONAI transforms).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, apply_windowing
from pydicom.uid import UID

FRAME_RULES = ("middle", "first", "max_intensity")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class ImageGeometry:
    """How a source image maps onto the preprocessed square (for overlaying heatmaps on the DICOM)."""

    rows: int
    cols: int
    size: int

    @property
    def scale(self) -> float:
        return self.size / max(self.rows, self.cols)

    @property
    def offset(self) -> tuple[int, int]:
        """Padding before the image, (rows, cols), as MONAI's symmetric SpatialPad places it."""
        resized = (round(self.rows * self.scale), round(self.cols * self.scale))
        return ((self.size - resized[0]) // 2, (self.size - resized[1]) // 2)

    def to_source(self, row: float, col: float) -> tuple[float, float]:
        """Map a pixel of the preprocessed square back to source pixel coordinates."""
        off_r, off_c = self.offset
        return ((row - off_r) / self.scale, (col - off_c) / self.scale)


@dataclass(frozen=True)
class PreprocessedImage:
    pixels: np.ndarray  # (size, size) float16 in [0, 1]
    geometry: ImageGeometry
    transfer_syntax: str
    photometric: str
    frames: int = 1  # frames in the source object; the image is one of them (or their projection)


def preprocess_file(
    path: Path, size: int, window: tuple[float, float] | None, window_index: int = 0, frame: str = "middle"
) -> PreprocessedImage:
    """Decode one DICOM file and turn it into a (size, size) float16 image in [0, 1]."""
    return preprocess_dataset(pydicom.dcmread(path), size, window, window_index, frame)


def preprocess_dataset(
    ds: Dataset, size: int, window: tuple[float, float] | None, window_index: int = 0, frame: str = "middle"
) -> PreprocessedImage:
    """Decode a dataset's pixels, window them (`to_unit_range`), take one 2D image by the frame rule
    (`pick_frame`), resize the longest side to `size` and pad to a square."""
    from monai.transforms import Compose, Resize, SpatialPad

    unit = to_unit_range(ds, ds.pixel_array, window, window_index)
    resize = Compose(
        [
            Resize(spatial_size=size, size_mode="longest", mode="area"),
            SpatialPad(spatial_size=(size, size), method="symmetric"),
        ]
    )
    image = np.asarray(resize(pick_frame(unit, frame)[np.newaxis]))[0]
    return PreprocessedImage(
        pixels=image.astype(np.float16),
        geometry=ImageGeometry(rows=int(ds.Rows), cols=int(ds.Columns), size=size),
        transfer_syntax=ds.file_meta.TransferSyntaxUID.name,
        photometric=str(ds.PhotometricInterpretation),
        frames=unit.shape[0] if unit.ndim == 3 else 1,
    )


def to_unit_range(
    ds: Dataset, pixels: np.ndarray, window: tuple[float, float] | None, window_index: int = 0
) -> np.ndarray:
    """Map decoded pixels to float32 in [0, 1]: (R, C) for one frame, (F, R, C) for a multi-frame object.

    `pixels` is what pydicom decodes: (R, C), (R, C, 3), (F, R, C) or (F, R, C, 3), with YBR colour already
    converted to RGB (pydicom's default). Grey-scale goes through the DICOM pipeline of the module docstring:
    `window` is (center, width) in modality units, applied as a LINEAR_EXACT window (edges exactly at
    center -/+ width / 2) and winning over anything in the header; `window_index` picks among the header's windows
    or VOI LUTs (the first when it is out of range). A header window that DICOM does not allow (LINEAR narrower
    than 1, a non-positive width, an unknown VOI LUT Function) counts as absent. The percentile range is taken
    over all frames without VOI information, so their contrast stays comparable.

    Colour (RGB, YBR_*, PALETTE COLOR) becomes luminance (0.299 R + 0.587 G + 0.114 B) scaled by the bit depth of
    the samples or palette entries; no window applies to colour, whose values are already display values.
    """
    samples = int(ds.get("SamplesPerPixel", 1))
    single_ndim = 2 if samples == 1 else 3
    if pixels.ndim not in (single_ndim, single_ndim + 1):
        raise ValueError(f"decoded pixels of shape {pixels.shape} do not fit {samples} sample(s) per pixel")
    multi_frame = pixels.ndim == single_ndim + 1
    frames = pixels if multi_frame else pixels[np.newaxis]
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if samples == 3:
        unit = _luminance(frames, int(ds.BitsStored))
    elif photometric == "PALETTE COLOR":
        unit = _luminance(apply_color_lut(frames, ds)[..., :3], int(ds.RedPaletteColorLookupTableDescriptor[2]))
    else:
        unit = _greyscale(ds, frames, window, window_index)
        if photometric == "MONOCHROME1":  # the lowest value displays white: invert
            np.subtract(1.0, unit, out=unit)
    return unit if multi_frame else unit[0]


def pick_frame(unit: np.ndarray, rule: str) -> np.ndarray:
    """One 2D image of a (F, R, C) stack: the middle frame (F // 2), the first, or the maximum intensity
    projection over the frames; a (R, C) image passes through."""
    if rule not in FRAME_RULES:
        raise ValueError(f"unknown frame rule {rule!r}; expected one of {', '.join(FRAME_RULES)}")
    if unit.ndim == 2:
        return unit
    if rule == "middle":
        return unit[unit.shape[0] // 2]
    if rule == "first":
        return unit[0]
    return unit.max(axis=0)


def _luminance(rgb: np.ndarray, bits: int) -> np.ndarray:
    unit = (rgb.astype(np.float32) @ _LUMA) / np.float32(2**bits - 1)
    return np.clip(unit, 0.0, 1.0, out=unit)


def _greyscale(ds: Dataset, frames: np.ndarray, window: tuple[float, float] | None, window_index: int) -> np.ndarray:
    """(F, R, C) stored values -> (F, R, C) float32 in [0, 1], before any MONOCHROME1 inversion."""
    unit = np.empty(frames.shape, dtype=np.float32)
    unwindowed: list[int] = []
    for index, frame in enumerate(frames):
        view = _frame_view(ds, index, window, window_index)
        values = apply_modality_lut(frame, view)
        if "VOILUTSequence" in view or "WindowCenter" in view:
            unit[index] = _voi_unit(values, view)
        else:
            unit[index] = values
            unwindowed.append(index)
    if unwindowed:
        values = unit[unwindowed]
        low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
        high = high if high > low else low + 1.0
        unit[unwindowed] = (values - low) / (high - low)
    return np.clip(unit, 0.0, 1.0, out=unit)


def _voi_unit(values: np.ndarray, view: Dataset) -> np.ndarray:
    """Apply the view's VOI stage and scale its output range to [0, 1]."""
    if "VOILUTSequence" in view:
        return _lookup(values, view.VOILUTSequence[0], view)
    with np.errstate(over="ignore"):  # SIGMOID far from its centre overflows exp() towards the range's ends
        # pydicom maps windows onto y_min..y_max (the stored or rescaled value range): -inf and +inf land exactly
        # on those ends for every VOI LUT Function, so the normalisation always matches pydicom's definition
        low, high = apply_windowing(np.array([-np.inf, np.inf]), view)
        return (apply_voi_lut(values, view) - low) / (high - low)


def _lookup(values: np.ndarray, lut: Dataset, view: Dataset) -> np.ndarray:
    """A VOI LUT applied as PS3.3 C.11.2.1.1 defines it: values below the first mapped value take the first entry,
    values past the last entry the last one. Done here because pydicom 3.0's `apply_voi` computes the indices in
    the LUT's output type, so an 8-bit LUT with more than 256 entries wraps around."""
    entries, first, bits = (int(v) for v in lut.LUTDescriptor)
    entries = entries or 2**16
    data = lut["LUTData"]
    if data.VR == "OW":  # 16-bit words in the file's byte order
        table = np.frombuffer(bytes(data.value), dtype="<u2" if _little_endian(view) else ">u2")[:entries]
    else:
        table = np.asarray(data.value, dtype=np.int64).reshape(-1)[:entries]
    indices = np.clip(np.rint(values).astype(np.int64) - first, 0, len(table) - 1)
    return table[indices].astype(np.float32) / float(2**bits - 1)


def _little_endian(view: Dataset) -> bool:
    meta = getattr(view, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return bool(UID(meta.TransferSyntaxUID).is_little_endian)
    return view.original_encoding[1] is not False


def _frame_view(ds: Dataset, index: int, window: tuple[float, float] | None, window_index: int) -> Dataset:
    """A dataset with just the attributes pydicom's LUT functions read, as they apply to one frame, with one VOI
    choice (or none). pydicom reads top-level attributes only, whereas enhanced objects keep rescale and windows in
    functional groups; a separate dataset also leaves the caller's untouched (pydicom's functions write to it)."""
    view = Dataset()
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:  # OW LUT data is read in the file's byte order
        view.file_meta = meta
    else:
        view.set_original_encoding(*ds.original_encoding)
    view.PhotometricInterpretation = ds.PhotometricInterpretation
    view.BitsStored = ds.BitsStored
    view.PixelRepresentation = ds.PixelRepresentation
    rescale = _frame_item(ds, index, "PixelValueTransformationSequence")
    if ds.get("ModalityLUTSequence"):
        view.ModalityLUTSequence = ds.ModalityLUTSequence
    elif rescale.get("RescaleSlope") is not None and rescale.get("RescaleIntercept") is not None:
        if float(rescale.RescaleSlope) == 0:
            raise ValueError("Rescale Slope is 0: every pixel would have the same value")
        view.RescaleSlope, view.RescaleIntercept = rescale.RescaleSlope, rescale.RescaleIntercept
    if window is not None:
        view.WindowCenter, view.WindowWidth = window
        view.VOILUTFunction = "LINEAR_EXACT"
        return view
    source = _frame_item(ds, index, "FrameVOILUTSequence")
    luts = source.get("VOILUTSequence") or []
    if luts:
        lut = luts[window_index] if window_index < len(luts) else luts[0]
        descriptor = lut.get("LUTDescriptor")
        usable = descriptor is not None and len(descriptor) == 3 and descriptor[2] in (8, *range(10, 17))
        if usable and lut.get("LUTData") is not None:
            view.VOILUTSequence = [lut]
            return view
    centers, widths = _numbers(source.get("WindowCenter")), _numbers(source.get("WindowWidth"))
    if centers and widths:
        chosen = window_index if window_index < min(len(centers), len(widths)) else 0
        function = str(source.get("VOILUTFunction") or "LINEAR").strip().upper()
        width = widths[chosen]
        if (function == "LINEAR" and width >= 1) or (function in ("LINEAR_EXACT", "SIGMOID") and width > 0):
            view.WindowCenter, view.WindowWidth, view.VOILUTFunction = centers[chosen], width, function
    return view


def _frame_item(ds: Dataset, index: int, sequence: str) -> Dataset:
    """The item of a functional-group sequence for one frame: per frame, else shared, else the dataset itself
    (where classic objects keep the same attributes)."""
    for groups, position in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and position < len(items) and items[position].get(sequence):
            return items[position].get(sequence)[0]
    return ds


def _numbers(value: object) -> list[float]:
    """Window Center/Width values (VM 1-n, possibly empty) as floats."""
    if value is None or value == "":
        return []
    return [float(v) for v in value] if isinstance(value, MultiValue | list) else [float(value)]
