"""The dicom section of a volume: an axial slice scroller in radiological convention with the heatmap overlay;
a 2D modality keeps its single image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clinfuse.kinds.dicom.section import axial_slice
from streamlit.testing.v1 import AppTest

SHAPE = (8, 6, 5)  # voxels along R, A, S


def _ras_volume() -> np.ndarray:
    """0.2, + 0.5 in the patient's right half (i grows toward the right), + 0.2 in the anterior half, + 0.01 k."""
    i, j, k = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    return 0.2 + 0.5 * (i >= SHAPE[0] // 2) + 0.2 * (j >= SHAPE[1] // 2) + 0.01 * k


def _cache(root: Path, arrays: dict[str, np.ndarray], index: dict) -> Path:
    """A feature cache holding one dicom modality 'ct' (the manifest lists no files, so none is verified)."""
    folder = root / "modalities" / "ct"
    folder.mkdir(parents=True)
    manifest = {"complete": True, "format": 2, "files": {}, "modalities": {"ct": {"kind": "dicom"}}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array.astype(np.float16))
        (folder / f"{name}.json").write_text(json.dumps(index))
    return root


def _section_app(cache_path: str, heatmap: object) -> None:  # a script: annotations are evaluated
    from clinfuse.kinds.dicom.section import render_image_section
    from clinfuse.platform.cache import FeatureCache
    from clinfuse.platform.kinds import SectionData

    render_image_section(SectionData("ct", "pseudonym", 1, FeatureCache(cache_path), {"heatmap": heatmap}))


def _run(cache: Path, heatmap: np.ndarray | None) -> AppTest:
    app = AppTest.from_function(_section_app, args=(str(cache), heatmap), default_timeout=60)
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    return app


@pytest.fixture
def volume_cache(tmp_path: Path) -> Path:
    volumes = np.stack([np.zeros(SHAPE), _ras_volume()])
    index = {"voxel_spacing": [5.0, 5.0, 4.0], "rows": [{"affine": np.eye(4).tolist()}] * 2}
    return _cache(tmp_path / "cache", {"volumes": volumes}, index)


def test_an_axial_slice_puts_the_patients_right_on_the_left_and_anterior_at_the_top() -> None:
    shown = axial_slice(_ras_volume(), 3)
    assert shown.shape == (SHAPE[1], SHAPE[0])  # rows: anterior to posterior, columns: right to left
    top_left, top_right, bottom_left, bottom_right = shown[0, 0], shown[0, -1], shown[-1, 0], shown[-1, -1]
    assert np.allclose([top_left, top_right, bottom_left, bottom_right], np.array([0.9, 0.4, 0.7, 0.2]) + 0.03)


def test_the_scroller_starts_on_the_hottest_slice_and_moves_through_the_volume(volume_cache: Path) -> None:
    heatmap = np.zeros(SHAPE, np.float32)
    heatmap[1:3, 2:4, 3] = 1.0
    heatmap[5, 1, 1] = 0.5
    app = _run(volume_cache, heatmap)
    scroller = app.slider(key="slice_ct")
    assert (scroller.min, scroller.max, scroller.value) == (0, SHAPE[2] - 1, 3)
    [image] = app.get("image")
    assert image.captions == ["ct, axial slice 4/5 with attribution overlay"]
    assert "Axial slice 4 of 5" in app.caption[0].value and "5 × 5 × 4 mm" in app.caption[0].value

    scroller.set_value(1).run()
    app.toggle(key="overlay_ct").set_value(False).run()
    assert not app.exception
    assert app.get("image")[0].captions == ["ct, axial slice 2/5"]
    assert "Axial slice 2 of 5" in app.caption[0].value


def test_without_a_heatmap_the_scroller_starts_in_the_middle_and_the_overlay_is_off(volume_cache: Path) -> None:
    app = _run(volume_cache, None)
    assert app.slider(key="slice_ct").value == SHAPE[2] // 2
    assert app.toggle(key="overlay_ct").disabled
    assert app.get("image")[0].captions == ["ct, axial slice 3/5"]


def test_a_2d_modality_keeps_its_single_image_view(tmp_path: Path) -> None:
    images = np.random.default_rng(0).random((2, 16, 16))
    cache = _cache(tmp_path / "cache", {"images": images}, {"rows": [{"rows": 32, "cols": 32}] * 2})
    app = _run(cache, np.ones((16, 16), np.float32))
    assert [slider.key for slider in app.slider] == ["level_ct", "width_ct", "opacity_ct"]
    assert app.get("image")[0].captions == ["ct with attribution overlay"]
