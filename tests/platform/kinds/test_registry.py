"""The kind registry: installed kinds come from entry points; a broken plug-in is reported when asked for and
does not stop the others."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds import get_kind, kinds, registry


def test_the_five_shipped_kinds_are_installed_through_entry_points() -> None:
    assert {"dicom", "table", "ehr", "notes", "waveform"} <= set(kinds())


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch):
    """The registry loaded anew from the entry points the test installs (restored afterwards)."""
    monkeypatch.setattr(registry, "_installed", None)
    monkeypatch.setattr(registry, "_broken", {})

    def install(*points: EntryPoint) -> None:
        monkeypatch.setattr(registry, "entry_points", lambda group: list(points))

    return install


def test_a_plug_in_that_does_not_import_is_reported_and_the_others_still_work(fresh_registry) -> None:
    fresh_registry(
        EntryPoint("table", "clinfuse.kinds.table:TableKind", registry.ENTRY_POINT_GROUP),
        EntryPoint("broken", "clinfuse.kinds.no_such_module:Kind", registry.ENTRY_POINT_GROUP),
    )
    assert list(kinds()) == ["table"]
    with pytest.raises(ClinFuseError, match="'broken' is installed but unusable: clinfuse.kinds.no_such_module"):
        get_kind("broken")


def test_an_entry_point_named_after_another_kind_is_refused(fresh_registry) -> None:
    fresh_registry(EntryPoint("imaging", "clinfuse.kinds.dicom:DicomKind", registry.ENTRY_POINT_GROUP))
    with pytest.raises(ClinFuseError, match="loads kind 'dicom'"):
        get_kind("imaging")


def test_an_unknown_kind_names_the_installed_ones() -> None:
    with pytest.raises(ClinFuseError, match=r"'x-ray' is not installed \(installed: dicom, ehr, notes, table"):
        get_kind("x-ray")
