"""Chest-radiograph-like images: body, lungs, heart, spine and ribs, with an optional focal opacity.

Images are in canonical orientation (dense tissue bright, values in [0, 1]); the DICOM writer maps them to
modality values and stored pixels (rescale, MONOCHROME1 inversion).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import zoom


@dataclass(frozen=True)
class Finding:
    """A focal opacity: centre and spread in pixels, and its bounding box (row0, col0, row1, col1)."""

    center: tuple[float, float]
    sigma: float
    amplitude: float
    bbox: tuple[int, int, int, int]


def render_radiograph(
    rows: int, cols: int, finding_amplitude: float, rng: np.random.Generator
) -> tuple[np.ndarray, Finding | None]:
    """Render one image; a positive `finding_amplitude` plants a Gaussian opacity inside a lung."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    y, x = yy / rows, xx / cols
    jitter = rng.normal(0.0, 0.015, size=4)

    body = _soft_ellipse(y, x, 0.52 + jitter[0], 0.5, 0.50, 0.44, edge=0.03)
    lungs = np.zeros_like(y)
    lung_centres = ((0.45 + jitter[1], 0.32 + jitter[2]), (0.45 + jitter[1], 0.68 + jitter[3]))
    for cy, cx in lung_centres:
        lungs = np.maximum(lungs, _soft_ellipse(y, x, cy, cx, 0.28, 0.13, edge=0.02))
    heart = _soft_ellipse(y, x, 0.60, 0.54, 0.14, 0.12, edge=0.03)
    spine = np.exp(-(((x - 0.5) / 0.035) ** 2)) * body
    ribs = (0.5 + 0.5 * np.sin(2 * np.pi * (y * 9.0 + 0.8 * (x - 0.5) ** 2 * 4) + rng.uniform(0, 2 * np.pi))) ** 8

    image = 0.10 + 0.55 * body - 0.33 * lungs + 0.22 * heart * lungs.max() + 0.22 * spine + 0.07 * ribs * lungs
    image += 0.03 * zoom(rng.normal(size=(8, 8)), (rows / 8, cols / 8), order=1)[:rows, :cols]

    finding = None
    if finding_amplitude > 0:
        cy, cx = lung_centres[int(rng.integers(0, 2))]
        angle, radius = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 1)) * 0.6
        centre = ((cy + radius * 0.28 * np.sin(angle)) * rows, (cx + radius * 0.13 * np.cos(angle)) * cols)
        sigma = (0.045 + 0.015 * min(finding_amplitude, 2.5)) * rows
        amplitude = 0.22 * min(finding_amplitude, 2.5) + 0.08
        image += amplitude * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))
        finding = Finding(
            center=(round(centre[0], 2), round(centre[1], 2)),
            sigma=round(sigma, 2),
            amplitude=round(amplitude, 4),
            bbox=(
                max(0, int(centre[0] - 2 * sigma)),
                max(0, int(centre[1] - 2 * sigma)),
                min(rows, int(np.ceil(centre[0] + 2 * sigma))),
                min(cols, int(np.ceil(centre[1] + 2 * sigma))),
            ),
        )
    image += rng.normal(0.0, 0.012, size=image.shape)
    return np.clip(image, 0.0, 1.0), finding


def _soft_ellipse(y: np.ndarray, x: np.ndarray, cy: float, cx: float, ry: float, rx: float, edge: float) -> np.ndarray:
    distance = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
    return 1.0 / (1.0 + np.exp((distance - 1.0) / edge))
