"""Second DICOM pass: decode pixels and preprocess them into model-ready arrays.

Decoding goes through pydicom's pixel backends (native, RLE, and the pylibjpeg/pyjpegls plugins for JPEG,
JPEG-LS and JPEG 2000). Then: Modality LUT (rescale slope/intercept), windowing to [0, 1] (the configured
window, else the header's first window, else the 0.5-99.5 percentile range), MONOCHROME1 inverted so dense
tissue is always bright, resize of the longest side and symmetric padding to a square (MONAI transforms).
Colour secondary captures are reduced to luminance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut


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


def preprocess_file(path: Path, size: int, window: tuple[float, float] | None) -> PreprocessedImage:
    """Decode one DICOM file and turn it into a (size, size) float16 image in [0, 1]."""
    from monai.transforms import Compose, Resize, ScaleIntensityRange, SpatialPad

    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    if int(ds.get("SamplesPerPixel", 1)) == 3:  # secondary-capture colour: pydicom gives RGB; take luminance
        values = (pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
    else:
        values = apply_modality_lut(pixels, ds).astype(np.float32)
    low, high = _window_bounds(ds, values, window)
    windowed = ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)(values[np.newaxis])
    if ds.PhotometricInterpretation == "MONOCHROME1":  # lowest value displays white: invert
        windowed = 1.0 - windowed
    resize = Compose(
        [
            Resize(spatial_size=size, size_mode="longest", mode="area"),
            SpatialPad(spatial_size=(size, size), method="symmetric"),
        ]
    )
    image = np.asarray(resize(windowed))[0]
    return PreprocessedImage(
        pixels=image.astype(np.float16),
        geometry=ImageGeometry(rows=int(ds.Rows), cols=int(ds.Columns), size=size),
        transfer_syntax=ds.file_meta.TransferSyntaxUID.name,
        photometric=str(ds.PhotometricInterpretation),
    )


def _window_bounds(ds: pydicom.Dataset, values: np.ndarray, window: tuple[float, float] | None) -> tuple[float, float]:
    if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
        window = (_first_value(ds.WindowCenter), _first_value(ds.WindowWidth))
    if window is not None and window[1] > 0:
        return window[0] - window[1] / 2.0, window[0] + window[1] / 2.0
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(max(high, low + 1.0))


def _first_value(value: object) -> float:
    """Window attributes may hold several windows; the first is the default one."""
    return float(value[0]) if isinstance(value, pydicom.multival.MultiValue) else float(value)
