"""The files of a dicom modality's cache folder: 2D images or 3D volumes, each with a JSON index of their rows.

2D: `images.npy` (N, size, size) float16 in [0, 1]. 3D: `volumes.npy` (N, X, Y, Z) float16 in [0, 1], in RAS
orientation (index i grows toward the patient's right, j anterior, k superior, as MONAI's `Orientation("RAS")`
lays it out), on the configured voxel grid; each row of `volumes.json` holds the voxel-to-RAS-millimetre affine
of its volume, so heatmaps can be placed in patient coordinates. The feature cache opens both memory-mapped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from clinfuse.platform.cache import FeatureCache

IMAGES_FILE = "images.npy"
IMAGE_INDEX_FILE = "images.json"
VOLUMES_FILE = "volumes.npy"
VOLUME_INDEX_FILE = "volumes.json"
IMAGES = IMAGES_FILE.removesuffix(".npy")
VOLUMES = VOLUMES_FILE.removesuffix(".npy")


def holds_volumes(cache: FeatureCache, name: str) -> bool:
    """Whether the modality was ingested with `volume: true` (its cache holds volumes, not 2D images)."""
    return (cache.modality_dir(name) / VOLUMES_FILE).exists()


class PreviousRows:
    """The previous cache's decoded rows (images or volumes) by source digest, when they were preprocessed the
    same way (`preprocessing` equal: settings and pixel code); rows stay memory-mapped until one is reused, so
    adding one file to a folder decodes one file."""

    def __init__(self, previous: Path | None, array_file: str, index_file: str, preprocessing: str) -> None:
        self.rows: dict[str, tuple[int, dict]] = {}
        if previous is None or not (previous / index_file).exists():
            return
        index = json.loads((previous / index_file).read_text())
        if index.get("preprocessing") != preprocessing:
            return
        self.array = np.load(previous / array_file, mmap_mode="r")
        self.rows = {row["digest"]: (i, {k: v for k, v in row.items() if k != "digest"})
                     for i, row in enumerate(index["rows"])}  # fmt: skip

    def __contains__(self, digest: str) -> bool:
        return digest in self.rows

    def get(self, digest: str) -> tuple[np.ndarray, dict]:
        row, meta = self.rows[digest]
        return np.array(self.array[row]), meta


class RowWriter:
    """Rows appended one at a time to a raw file in scratch, saved as `.npy` once their number is known.

    Memory holds one row whatever the cohort's size: stacking a list (np.save) would hold every row twice, and a
    memory map sized in advance would count each written page in the process's resident memory."""

    def __init__(self, scratch: Path, name: str, row_shape: tuple[int, ...]) -> None:
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self._raw_path = scratch / f"{name}.rows"
        self._raw = self._raw_path.open("wb")

    def append(self, row: np.ndarray) -> None:
        if row.shape != self.row_shape:
            raise ValueError(f"row of shape {row.shape}, expected {self.row_shape}")
        self._raw.write(np.ascontiguousarray(row, dtype=np.float16).tobytes())
        self.rows += 1

    def save(self, path: Path) -> None:
        """`path` as a float16 `.npy` array of every appended row, in order; the raw file is removed."""
        self._raw.close()
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
                  "shape": (self.rows, *self.row_shape)}  # fmt: skip
        with path.open("wb") as out, self._raw_path.open("rb") as raw:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(raw, out, length=1 << 22)
        self._raw_path.unlink()
