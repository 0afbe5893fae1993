"""Read and write cohort.yaml: validation errors become one line naming the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from clinfuse.platform.config.cohort import MODALITY_ERROR, CohortConfig
from clinfuse.platform.errors import ClinFuseError
from pydantic import ValidationError


def load_cohort_config(path: str | Path, check_files: bool = True, labels_required: bool = True) -> CohortConfig:
    """Load cohort.yaml, resolving relative paths against the config's folder.

    With `check_files`, every referenced path must exist and the cohort table must hold the configured
    columns, so a bad config fails before any work starts. Scoring passes `labels_required=False`: a cohort
    to be scored need not have an outcome column.
    """
    config_path = Path(path)
    if not _is_file(config_path):
        raise ClinFuseError(f"cohort config {config_path} not found", "pass --config pointing to a cohort.yaml")
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ClinFuseError(f"cohort config {config_path} is not valid YAML: {exc}".splitlines()[0]) from exc
    except UnicodeDecodeError as exc:
        raise ClinFuseError(
            f"cohort config {config_path} is not UTF-8 text (byte {exc.start} cannot be decoded)", "save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ClinFuseError(f"cohort config {config_path} cannot be read: {exc.strerror}", "check it") from None
    if not isinstance(raw, dict):
        raise ClinFuseError(f"cohort config {config_path} must be a YAML mapping", "see docs/cohort-config.md")
    try:
        config = CohortConfig.model_validate(raw)
    except ValidationError as exc:
        raise ClinFuseError(_describe_validation_error(config_path, exc), "see docs/cohort-config.md") from exc
    config = _resolve_paths(config, config_path.parent.resolve())
    if check_files:
        _check_files(config, labels_required)
    return config


def write_cohort_config(config: CohortConfig, path: str | Path) -> None:
    """Write a config as YAML, with paths relative to its folder where they lie below it."""
    target = Path(path)
    data = config.model_dump(mode="json", exclude_defaults=True)
    base = target.parent.resolve()
    data["cohort"]["path"] = _relative(Path(config.cohort.path), base)
    for entry, modality in zip(data["modalities"], config.modalities, strict=True):
        entry["kind"] = modality.kind
        entry["path"] = _relative(Path(modality.path), base)
        for field, path in modality.extra_paths().items():
            entry[field] = _relative(Path(path), base)
    target.write_text(yaml.safe_dump(data, sort_keys=False))


def _describe_validation_error(config_path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    message = first["msg"]
    if first["type"] == MODALITY_ERROR:  # a modality entry: its kind's model placed the error
        location, message = first["ctx"]["where"], first["ctx"]["message"]
    elif first["type"] == "extra_forbidden":
        message = "unknown field (misspelt?)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid cohort config {config_path.name}: {location}: {message}{more}"


def _resolve_paths(config: CohortConfig, base: Path) -> CohortConfig:
    def resolve(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else (base / p).resolve())

    cohort = config.cohort.model_copy(update={"path": resolve(config.cohort.path)})
    modalities = []
    for modality in config.modalities:
        update: dict[str, Any] = {"path": resolve(modality.path)}
        update.update({field: resolve(path) for field, path in modality.extra_paths().items()})
        modalities.append(modality.model_copy(update=update))
    return config.model_copy(update={"cohort": cohort, "modalities": tuple(modalities)})


def _check_files(config: CohortConfig, labels_required: bool) -> None:
    if not _is_file(config.cohort.path):
        raise ClinFuseError(f"cohort.path: {config.cohort.path} not found", "point it at the cohort CSV/Parquet")
    for modality in config.modalities:
        if not _exists(modality.path):
            raise ClinFuseError(
                f"modalities.{modality.name}.path: {modality.path} not found",
                "fix the path (relative paths resolve against the config's folder) or remove the modality",
            )
        if modality.path_is_file and not _is_file(modality.path):
            raise ClinFuseError(
                f"modalities.{modality.name}.path: {modality.path} is not a file", "point it at the table file"
            )
        for field, path in modality.extra_paths().items():
            if not _exists(path):
                raise ClinFuseError(f"modalities.{modality.name}.{field}: {path} not found", "fix the path")
    header = _read_header(config.cohort.path)
    table = config.cohort
    for field in ("patient_id", "label", "index_time", "split", "sex", "age"):
        if field == "label" and not labels_required:
            continue
        column = getattr(table, field)
        if column is not None and column not in header:
            raise ClinFuseError(
                f"cohort.{field}: column '{column}' is absent from {table.path.name}",
                f"set cohort.{field} to one of {sorted(header)}",
            )


def _read_header(path: Path) -> list[str]:
    """The cohort table's column names as written (pandas would rename a repeated 'x' to 'x.1')."""
    from clinfuse.platform.ingest.table_source import read_source_header  # the ingest imports this package

    return read_source_header(path, f"cohort.path: {path}")


def _is_file(path: Path) -> bool:
    """Path.is_file, but a name the OS refuses (too long, ...) is simply not there rather than a traceback."""
    try:
        return path.is_file()
    except OSError:
        return False


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base))
    except ValueError:
        return str(path)
