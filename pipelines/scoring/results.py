"""Read a `clinfuse score` output: the score table plus what produced it (model bundle, scoring cache).

Opening a scores file verifies the model bundle it names against the manifest digest recorded at scoring time,
so the dashboard never shows metrics, calibration or explanations from a bundle that was changed since."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from clinfuse.pipelines.registry.model_folder import open_model
from clinfuse.platform.errors import ClinFuseError

METADATA_KEY = b"clinfuse"


@dataclass(frozen=True)
class ScoreResults:
    table: pd.DataFrame
    metadata: dict

    @classmethod
    def open(cls, path: str | Path) -> ScoreResults:
        path = Path(path)
        if not path.is_file():
            raise ClinFuseError(f"scores file {path} not found", "run `clinfuse score ... --out FILE` first")
        try:
            arrow = pq.read_table(path)
        except Exception as exc:  # any Arrow/Parquet error means the same to the user
            raise ClinFuseError(f"{path} is not a readable Parquet file ({type(exc).__name__})", "score again") from exc
        raw = (arrow.schema.metadata or {}).get(METADATA_KEY)
        if raw is None:
            raise ClinFuseError(
                f"{path} was not written by `clinfuse score`", "pass the --out file of `clinfuse score`"
            )
        metadata = json.loads(raw)
        for key in ("model_dir", "cache"):
            if not Path(metadata[key]).exists():
                raise ClinFuseError(f"{path} refers to {key} {metadata[key]}, which no longer exists",
                                    "score the cohort again on this machine")  # fmt: skip
        open_model(Path(metadata["model_dir"]), metadata["manifest_sha256"])
        return cls(arrow.to_pandas(), metadata)

    @property
    def modalities(self) -> dict[str, str]:
        """Modality name -> kind, in the model's order."""
        return dict(self.metadata["modalities"])

    @property
    def model_name(self) -> str:
        return self.metadata["model_name"]

    @property
    def model_version(self) -> int:
        return int(self.metadata["model_version"])

    @property
    def aliases(self) -> list[str]:
        return list(self.metadata["model_aliases"])

    @property
    def model_dir(self) -> Path:
        return Path(self.metadata["model_dir"])

    @property
    def manifest_sha256(self) -> str:
        return self.metadata["manifest_sha256"]

    @property
    def cache(self) -> Path:
        return Path(self.metadata["cache"])

    @property
    def explained(self) -> bool:
        return bool(self.metadata["explained"])

    def explainer(self, top_k: int = 20, heatmap_dir: Path | None = None):
        """A RunExplainer over the scored patients (model bundle + scoring cache)."""
        from clinfuse.pipelines.explain import RunExplainer

        return RunExplainer(
            self.model_dir, cache=self.cache, top_k=top_k, heatmap_dir=heatmap_dir, manifest_sha256=self.manifest_sha256
        )
