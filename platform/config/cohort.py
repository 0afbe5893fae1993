"""Schema of cohort.yaml: the cohort table plus any number of modalities, each of one `kind`.

Modalities are data, not code paths: downstream stages loop over `CohortConfig.modalities` and ask the kind
registry (`clinfuse.platform.kinds`) for each modality's parts; nothing names "imaging" or "genomics", and each
modality's fields are validated by its kind's config model.
"""

from __future__ import annotations

from pathlib import Path

from clinfuse.platform.kinds import KindConfig, kinds
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

MODALITY_ERROR = "modality_config"  # the error type of a modality entry (its message carries the location)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CohortTable(_Strict):
    """The patient table: one row per patient with the outcome and the index time."""

    path: Path
    patient_id: str = "patient_id"
    label: str = "label"
    index_time: str = "index_time"
    split: str | None = None
    sex: str | None = None
    age: str | None = None


class SplitConfig(_Strict):
    """Patient-level, label-stratified, seeded split (ignored when the cohort has a split column)."""

    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1.0, got {total:g}")
        return self


ModalityConfig = SerializeAsAny[KindConfig]  # each kind's own model: dumped with all its fields


class CohortConfig(_Strict):
    """A whole cohort: where the patients are and which modalities describe them."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    cohort: CohortTable
    modalities: tuple[ModalityConfig, ...] = Field(min_length=1)
    split: SplitConfig = SplitConfig()
    pseudonymise_ids: bool = True

    @field_validator("modalities", mode="before")
    @classmethod
    def _validate_by_kind(cls, modalities: object) -> object:
        """Validate each modality with its kind's config model (found in the kind registry)."""
        if not isinstance(modalities, list | tuple):
            return modalities  # pydantic reports the type error
        return tuple(_modality_config(entry, index) for index, entry in enumerate(modalities))

    @field_validator("modalities")
    @classmethod
    def _unique_names(cls, modalities: tuple[ModalityConfig, ...]) -> tuple[ModalityConfig, ...]:
        names = [m.name for m in modalities]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"duplicate modality name(s) {duplicated}: give each modality its own name")
        return modalities

    def modality(self, name: str) -> ModalityConfig:
        for modality in self.modalities:
            if modality.name == name:
                return modality
        raise KeyError(name)


def _modality_config(entry: object, index: int) -> KindConfig:
    """One modality entry as its kind's config model; errors keep their place (modalities.<i>.<kind>.<field>)."""
    if isinstance(entry, KindConfig):
        return entry
    if not isinstance(entry, dict):
        where = f"modalities.{index}"
        raise PydanticCustomError(MODALITY_ERROR, "{where}: {message}",
                                  {"where": where, "message": "each modality must be a mapping"})  # fmt: skip
    available = kinds()
    kind = entry.get("kind")
    if kind not in available:
        message = f"unknown modality kind {kind!r}; use one of {', '.join(available)}"
        raise PydanticCustomError(MODALITY_ERROR, "{where}: {message}",
                                  {"where": f"modalities.{index}", "message": message})  # fmt: skip
    try:
        return available[kind].config_model.model_validate(entry)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        message = {"extra_forbidden": "unknown field (misspelt?)",
                   "value_error": str(first.get("ctx", {}).get("error", first["msg"]))}.get(first["type"], first["msg"])
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        where = f"modalities.{index}.{kind}" + (f".{field}" if field else "")
        raise PydanticCustomError(MODALITY_ERROR, "{where}: {message}",
                                  {"where": where, "message": message + more}) from None  # fmt: skip
