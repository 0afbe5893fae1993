"""cohort.yaml: schema, loading with path resolution and file checks, errors naming the field, round-trip."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from clinfuse.kinds.dicom.config import DicomModality
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.kinds.table.config import TableModality
from clinfuse.platform.config import (
    CohortConfig,
    SplitConfig,
    load_cohort_config,
    write_cohort_config,
)
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds import kinds
from pydantic import ValidationError

BASE: dict = {
    "name": "test-cohort",
    "cohort": {"path": "cohort.csv", "sex": "sex", "age": "age"},
    "modalities": [
        {"name": "imaging", "kind": "dicom", "path": "images"},
        {"name": "genomics", "kind": "table", "path": "genomics/expression.csv"},
        {"name": "ehr", "kind": "ehr", "path": "ehr"},
    ],
}


@pytest.fixture
def cohort_dir(tmp_path: Path) -> Path:
    """A folder holding every file BASE refers to, plus a manifest CSV for manifest-linked imaging."""
    root = tmp_path / "study"
    root.mkdir()
    (root / "cohort.csv").write_text(
        "patient_id,label,index_time,sex,age,fold\n"
        "P001,0,2150-01-01 08:00:00,F,61,train\n"
        "P002,1,2150-02-01 09:00:00,M,57,test\n"
    )
    (root / "genomics").mkdir()
    (root / "genomics" / "expression.csv").write_text("patient_id,GENE1\nP001,1.5\nP002,2.5\n")
    (root / "images").mkdir()
    (root / "ehr").mkdir()
    (root / "manifest.csv").write_text("patient_id,path\nP001,images/a.dcm\n")
    return root


def _write(folder: Path, data: dict, name: str = "cohort.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _load_error(folder: Path, data: dict, check_files: bool = True) -> ClinFuseError:
    with pytest.raises(ClinFuseError) as caught:
        load_cohort_config(_write(folder, data), check_files=check_files)
    return caught.value


def test_valid_config_loads_with_paths_resolved_against_its_folder(
    cohort_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths must not resolve against the working directory
    config = load_cohort_config(_write(cohort_dir, BASE))

    assert isinstance(config, CohortConfig)
    assert config.name == "test-cohort"
    root = cohort_dir.resolve()
    assert config.cohort.path == root / "cohort.csv"
    assert config.cohort.path.is_absolute()
    assert (config.cohort.patient_id, config.cohort.label, config.cohort.index_time) == (
        "patient_id",
        "label",
        "index_time",
    )
    assert (config.cohort.sex, config.cohort.age, config.cohort.split) == ("sex", "age", None)
    assert [m.name for m in config.modalities] == ["imaging", "genomics", "ehr"]
    assert [type(m) for m in config.modalities] == [DicomModality, TableModality, EhrModality]
    assert config.modality("imaging").path == root / "images"
    assert config.modality("genomics").path == root / "genomics" / "expression.csv"
    assert config.modality("ehr").path == root / "ehr"
    assert config.split == SplitConfig(train=0.7, val=0.15, test=0.15, seed=0)
    assert config.pseudonymise_ids is True


def test_defaults_of_each_modality_kind(cohort_dir: Path) -> None:
    config = load_cohort_config(_write(cohort_dir, BASE))
    imaging, genomics, ehr = config.modalities
    assert (imaging.link, imaging.manifest, imaging.image_size, imaging.window) == ("patient_id_tag", None, 128, None)
    assert genomics.layout == "wide"
    assert (genomics.on_duplicate_patient, genomics.on_non_numeric, genomics.on_all_nan_column) == (
        "error",
        "error",
        "drop",
    )
    assert ehr.source == "mimic4"
    assert ehr.events == ("diagnosis", "procedure", "drug", "lab")
    assert (ehr.timezone, ehr.code_systems, ehr.icd9_to_icd10) == ("UTC", {}, False)


def test_modality_lookup_by_unknown_name_raises_key_error(cohort_dir: Path) -> None:
    config = load_cohort_config(_write(cohort_dir, BASE))
    with pytest.raises(KeyError):
        config.modality("radiology")


def test_absolute_paths_are_kept_and_dotdot_paths_resolve(cohort_dir: Path, tmp_path: Path) -> None:
    sub = cohort_dir / "configs"
    sub.mkdir()
    data = copy.deepcopy(BASE)
    data["cohort"]["path"] = str((cohort_dir / "cohort.csv").resolve())
    data["modalities"][1]["path"] = "../genomics/expression.csv"
    data["modalities"][0]["path"] = "../images"
    data["modalities"][2]["path"] = "../ehr"
    config = load_cohort_config(_write(sub, data))
    assert config.cohort.path == (cohort_dir / "cohort.csv").resolve()
    assert config.modality("genomics").path == (cohort_dir / "genomics" / "expression.csv").resolve()
    assert ".." not in config.modality("imaging").path.parts


def test_manifest_path_resolves_against_the_config_folder(cohort_dir: Path) -> None:
    data = copy.deepcopy(BASE)
    data["modalities"][0].update({"link": "manifest", "manifest": "manifest.csv", "window": [40, 400]})
    config = load_cohort_config(_write(cohort_dir, data))
    imaging = config.modality("imaging")
    assert imaging.link == "manifest"
    assert imaging.manifest == cohort_dir.resolve() / "manifest.csv"
    assert imaging.window == (40.0, 400.0)


def _set(path: tuple, value: object) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _append_modality(entry: dict) -> Callable[[dict], None]:
    return lambda data: data["modalities"].append(entry)


INVALID_CASES = {
    "unknown modality kind": (
        _append_modality({"name": "notes", "kind": "text", "path": "ehr"}),
        ["modalities.3", "unknown modality kind 'text'", f"use one of {', '.join(kinds())}"],
    ),
    "duplicate modality name": (
        _append_modality({"name": "genomics", "kind": "table", "path": "genomics/expression.csv"}),
        ["modalities", "duplicate modality name", "'genomics'"],
    ),
    "misspelt modality field": (
        _set(("modalities", 1, "layuot"), "long"),
        ["modalities.1.table.layuot", "unknown field"],
    ),
    "misspelt cohort field": (
        _set(("cohort", "lable"), "outcome"),
        ["cohort.lable", "unknown field"],
    ),
    "misspelt top-level field": (
        _set(("modalitiez",), []),
        ["modalitiez", "unknown field"],
    ),
    "split fractions not summing to 1": (
        _set(("split",), {"train": 0.8, "val": 0.15, "test": 0.15}),
        ["split", "train + val + test must be 1.0", "1.1"],
    ),
    "split fraction out of range": (
        _set(("split",), {"train": 1.0, "val": 0.0, "test": 0.0}),
        ["split.train"],
    ),
    "link manifest without manifest": (
        _set(("modalities", 0, "link"), "manifest"),
        ["modalities.0.dicom", "link: manifest needs a 'manifest'"],
    ),
    "bad table policy": (
        _set(("modalities", 1, "on_duplicate_patient"), "last"),
        ["modalities.1.table.on_duplicate_patient"],
    ),
    "bad modality name": (
        _set(("modalities", 1, "name"), "Genomics Panel"),
        ["modalities.1.table.name"],
    ),
    "image size too small": (
        _set(("modalities", 0, "image_size"), 8),
        ["modalities.0.dicom.image_size"],
    ),
    "no modalities": (
        _set(("modalities",), []),
        ["modalities", "at least 1"],
    ),
    "missing cohort section": (
        lambda data: data.pop("cohort"),
        ["cohort", "Field required"],
    ),
}


@pytest.mark.parametrize("case", list(INVALID_CASES))
def test_invalid_schema_raises_clinfuse_error_naming_the_field(cohort_dir: Path, case: str) -> None:
    mutate, expected = INVALID_CASES[case]
    data = copy.deepcopy(BASE)
    mutate(data)
    error = _load_error(cohort_dir, data, check_files=False)
    message = str(error)
    assert message.startswith("invalid cohort config cohort.yaml: "), message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert error.fix == "see docs/cohort-config.md"


def test_several_problems_are_summarised_in_one_line(cohort_dir: Path) -> None:
    data = copy.deepcopy(BASE)
    data["cohort"]["lable"] = "x"
    data["split"] = {"train": 0.9, "val": 0.15, "test": 0.15}
    message = str(_load_error(cohort_dir, data, check_files=False))
    assert "(+1 more)" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_set(("cohort", "path"), "missing.csv"), ["cohort.path", "missing.csv", "not found"]),
        (_set(("modalities", 1, "path"), "genomics/missing.parquet"), ["modalities.genomics.path", "not found"]),
        (_set(("modalities", 0, "path"), "no_images"), ["modalities.imaging.path", "no_images", "not found"]),
        (_set(("modalities", 2, "path"), "mimic"), ["modalities.ehr.path", "not found"]),
    ],
    ids=["cohort", "table", "dicom", "ehr"],
)
def test_missing_path_raises_error_naming_the_field(cohort_dir: Path, mutate, expected: list[str]) -> None:
    data = copy.deepcopy(BASE)
    mutate(data)
    message = str(_load_error(cohort_dir, data))
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_missing_manifest_file_raises_error_naming_the_field(cohort_dir: Path) -> None:
    data = copy.deepcopy(BASE)
    data["modalities"][0].update({"link": "manifest", "manifest": "nowhere.csv"})
    message = str(_load_error(cohort_dir, data))
    assert "modalities.imaging.manifest" in message
    assert "nowhere.csv" in message
    assert "not found" in message


def test_check_files_false_skips_the_file_checks(cohort_dir: Path) -> None:
    data = copy.deepcopy(BASE)
    data["cohort"]["path"] = "missing.csv"
    data["modalities"][1]["path"] = "missing.parquet"
    config = load_cohort_config(_write(cohort_dir, data), check_files=False)
    assert config.cohort.path == cohort_dir.resolve() / "missing.csv"
    assert config.modality("genomics").path == cohort_dir.resolve() / "missing.parquet"


@pytest.mark.parametrize("field", ["patient_id", "label", "index_time", "split", "sex", "age"])
def test_configured_column_absent_from_cohort_table_raises_error_naming_the_field(cohort_dir: Path, field: str) -> None:
    data = copy.deepcopy(BASE)
    data["cohort"][field] = "no_such_column"
    error = _load_error(cohort_dir, data)
    assert f"cohort.{field}: column 'no_such_column' is absent from cohort.csv" in str(error)
    # the fix lists the columns that do exist
    assert "index_time" in error.fix and "patient_id" in error.fix


def test_columns_are_checked_in_tsv_and_parquet_cohort_tables(cohort_dir: Path) -> None:
    frame = pd.read_csv(cohort_dir / "cohort.csv")
    frame.rename(columns={"label": "outcome"}).to_csv(cohort_dir / "cohort.tsv", sep="\t", index=False)
    frame.rename(columns={"index_time": "t0"}).to_parquet(cohort_dir / "cohort.parquet")

    data = copy.deepcopy(BASE)
    data["cohort"]["path"] = "cohort.tsv"
    assert "cohort.label: column 'label' is absent from cohort.tsv" in str(_load_error(cohort_dir, data))
    data["cohort"]["label"] = "outcome"
    assert load_cohort_config(_write(cohort_dir, data)).cohort.label == "outcome"

    data = copy.deepcopy(BASE)
    data["cohort"]["path"] = "cohort.parquet"
    assert "cohort.index_time: column 'index_time' is absent" in str(_load_error(cohort_dir, data))
    data["cohort"]["index_time"] = "t0"
    assert load_cohort_config(_write(cohort_dir, data)).cohort.index_time == "t0"


def test_split_column_present_in_the_table_is_accepted(cohort_dir: Path) -> None:
    data = copy.deepcopy(BASE)
    data["cohort"]["split"] = "fold"
    assert load_cohort_config(_write(cohort_dir, data)).cohort.split == "fold"


def test_invalid_yaml_raises_one_line_error(cohort_dir: Path) -> None:
    path = cohort_dir / "cohort.yaml"
    path.write_text("name: [unclosed\ncohort: {path: cohort.csv\n")
    with pytest.raises(ClinFuseError) as caught:
        load_cohort_config(path)
    message = str(caught.value)
    assert "is not valid YAML" in message
    assert "cohort.yaml" in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["- just\n- a list\n", "", "just a string\n"])
def test_yaml_that_is_not_a_mapping_raises_error(cohort_dir: Path, text: str) -> None:
    path = cohort_dir / "cohort.yaml"
    path.write_text(text)
    with pytest.raises(ClinFuseError, match="must be a YAML mapping"):
        load_cohort_config(path)


def test_missing_config_file_raises_error(tmp_path: Path) -> None:
    with pytest.raises(ClinFuseError, match="not found") as caught:
        load_cohort_config(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(caught.value)
    assert "--config" in caught.value.fix


def test_valid_custom_split_is_kept(cohort_dir: Path) -> None:
    data = copy.deepcopy(BASE)
    data["split"] = {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 42}
    config = load_cohort_config(_write(cohort_dir, data))
    assert config.split == SplitConfig(train=0.6, val=0.2, test=0.2, seed=42)


def test_config_is_immutable(cohort_dir: Path) -> None:
    config = load_cohort_config(_write(cohort_dir, BASE))
    with pytest.raises(ValidationError, match="frozen"):
        config.name = "other"


def _rich_config_data() -> dict:
    data = copy.deepcopy(BASE)
    data["split"] = {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 7}
    data["pseudonymise_ids"] = False
    data["modalities"][0].update(
        {"link": "manifest", "manifest": "manifest.csv", "window": [40, 400], "image_size": 64}
    )
    data["modalities"][1].update(
        {"layout": "long", "on_duplicate_patient": "mean", "on_non_numeric": "coerce", "exclude_columns": ["site"]}
    )
    data["modalities"][2].update({"events": ["diagnosis"], "max_codes": 64, "timezone": "Europe/Berlin"})
    return data


def test_write_then_load_round_trips(cohort_dir: Path) -> None:
    original = load_cohort_config(_write(cohort_dir, _rich_config_data()))
    write_cohort_config(original, cohort_dir / "written.yaml")
    reloaded = load_cohort_config(cohort_dir / "written.yaml")
    assert reloaded == original
    assert reloaded.modality("imaging").window == (40.0, 400.0)
    assert reloaded.modality("genomics").exclude_columns == ("site",)


def test_write_of_defaults_only_config_round_trips(cohort_dir: Path) -> None:
    original = load_cohort_config(_write(cohort_dir, BASE))
    write_cohort_config(original, cohort_dir / "written.yaml")
    assert load_cohort_config(cohort_dir / "written.yaml") == original


def test_written_paths_are_relative_below_the_folder_and_absolute_outside(cohort_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text("patient_id,x\nP001,1\n")
    data = _rich_config_data()
    data["modalities"][1]["path"] = str(outside)
    config = load_cohort_config(_write(cohort_dir, data))
    write_cohort_config(config, cohort_dir / "written.yaml")
    written = yaml.safe_load((cohort_dir / "written.yaml").read_text())
    assert written["cohort"]["path"] == "cohort.csv"
    imaging, genomics, ehr = written["modalities"]
    assert imaging["path"] == "images"
    assert imaging["manifest"] == "manifest.csv"
    assert genomics["path"] == str(outside.resolve())
    assert ehr["path"] == "ehr"
    assert [m["kind"] for m in written["modalities"]] == ["dicom", "table", "ehr"]


def test_written_config_still_loads_after_moving_its_folder(cohort_dir: Path, tmp_path: Path) -> None:
    config = load_cohort_config(_write(cohort_dir, _rich_config_data()))
    write_cohort_config(config, cohort_dir / "written.yaml")
    moved = tmp_path / "moved"
    shutil.copytree(cohort_dir, moved)
    shutil.rmtree(cohort_dir)
    reloaded = load_cohort_config(moved / "written.yaml")
    root = moved.resolve()
    assert reloaded.cohort.path == root / "cohort.csv"
    assert reloaded.modality("imaging").manifest == root / "manifest.csv"
    assert reloaded.modality("genomics").path == root / "genomics" / "expression.csv"
