"""The fields every modality has in cohort.yaml; each kind's config model extends `KindConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"


class KindConfig(BaseModel):
    """Base of a kind's config model: `name`, `path` and the `kind` literal, strict and frozen.

    A kind's model declares `kind: Literal["<kind>"]` and its own fields. `path_fields` names further fields that
    hold paths: the loader resolves them against the config's folder and checks they exist, and the ingest
    fingerprints their content (a changed manifest rebuilds the modality).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="lower-case identifier, e.g. 'imaging'")
    path: Path
    kind: str

    path_fields: ClassVar[tuple[str, ...]] = ()
    path_is_file: ClassVar[bool] = False  # `path` must name a file (a table), not a folder
    # Fields saying where this site's data lives and what its machines may spend, not how the model preprocesses:
    # scoring takes them (and `path`, `path_fields`) from the scoring site's config, the rest from the model.
    site_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def site_field_names(cls) -> set[str]:
        return {"path", *cls.path_fields, *cls.site_fields}

    def listed_inputs(self) -> list[Path] | None:
        """The input files, when the config lists them (a manifest): only those are fingerprinted, not every file
        under `path` (an online request names two images inside an archive of thousands). None: the whole tree."""
        return None

    def extra_paths(self) -> dict[str, Path]:
        """The path-valued fields that are set, by field name."""
        return {field: getattr(self, field) for field in self.path_fields if getattr(self, field) is not None}
