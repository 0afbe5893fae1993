"""The `table` modality kind: a wide or long CSV/TSV/Parquet table of numeric features per patient (genomics
expression, flat clinical tables). Its encoders are the tabular ones of `clinfuse.models.encoders`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from clinfuse.kinds.table.config import TableModality
from clinfuse.platform.kinds import FeatureBlock, ModalityKind, Reader, SectionData

if TYPE_CHECKING:
    import pandas as pd


class TableKind(ModalityKind):
    name = "table"
    label = "table features"
    config_model = TableModality
    architectures: ClassVar[tuple[str, ...]] = ("linear", "xgboost", "mlp", "snn")
    default_architectures: ClassVar[dict[str, str]] = {"gpu": "mlp", "cpu": "mlp"}

    def ingest(self, config, cohort, out: Path, context):
        from clinfuse.kinds.table.ingest import ingest_table

        return ingest_table(config, cohort, out, context)

    def why_absent(self, report: dict) -> str:
        cleaning = report["cleaning"]
        return f"{cleaning['rows_not_in_cohort']} of {cleaning['rows_read']} rows have ids not in the cohort table"

    def reader(self, cache, name: str) -> tuple[Reader, dict[str, int]]:
        from clinfuse.kinds.table.features import table_reader

        return table_reader(cache, name)

    def feature_table(self, cache, name: str) -> pd.DataFrame:
        from clinfuse.kinds.table.features import FEATURES

        return cache.table(name, FEATURES)

    def build_encoder(self, spec):
        from clinfuse.models.encoders.linear_table import LinearTableEncoder
        from clinfuse.models.encoders.table import TableMLP
        from clinfuse.models.encoders.tree_table import TreeTableEncoder

        if spec.architecture == "linear":
            return LinearTableEncoder(spec.dims["features"], spec.embed_dim)
        if spec.architecture == "xgboost":
            return TreeTableEncoder(spec.dims["features"], spec.embed_dim)
        return TableMLP(spec.dims["features"], spec.embed_dim, self_normalising=spec.architecture == "snn")

    def baseline_features(self, cache, name: str, embed_dim: int) -> FeatureBlock:
        from clinfuse.kinds.table.features import table_block

        return table_block(cache, name)

    def attribution_context(self, cache, name: str, background: np.ndarray | None):
        import torch
        from clinfuse.models.explain.within_modality import AttributionContext

        columns = [c for c in self.feature_table(cache, name).columns if c != "patient"]
        return AttributionContext(feature_names=columns, background={"features": torch.from_numpy(background)})

    def attribute(self, branch, inputs, context):
        from clinfuse.kinds.table.attribution import table_attribution

        return table_attribution(branch, inputs, context)

    def render_section(self, section: SectionData) -> bool:
        from clinfuse.kinds.table.section import render_table_section

        render_table_section(section)
        return True

    def request_cell(self, config, patient_id: str):
        from clinfuse.kinds.table.request import table_request_cell

        return table_request_cell(config, patient_id)

    def write_request_source(self, settings, cells, folder: Path):
        from clinfuse.kinds.table.request import write_table_request

        return write_table_request(settings, cells, folder)
