"""The `ehr` modality kind: coded events and labs from MIMIC-IV/III, OMOP, MEDS or FHIR exports (kinds/ehr/sources),
events strictly before the index time; a code-sequence encoder (GRU or transformer) plus the lab vector."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from clinfuse.kinds.ehr.config import EhrModality
from clinfuse.platform.kinds import FeatureBlock, ModalityKind, Reader, SectionData


class EhrKind(ModalityKind):
    name = "ehr"
    label = "EHR"
    config_model = EhrModality
    architectures: ClassVar[tuple[str, ...]] = ("gru", "transformer")
    default_architectures: ClassVar[dict[str, str]] = {"gpu": "gru", "cpu": "gru"}

    def ingest(self, config, cohort, out: Path, context):
        from clinfuse.kinds.ehr.ingest import ingest_ehr

        return ingest_ehr(config, cohort, out, context)

    def why_absent(self, report: dict) -> str:
        from clinfuse.kinds.ehr.events import AFTER_INDEX

        return (f"no events of cohort patients before their index times "
                f"({report['events_left_out'].get(AFTER_INDEX, 0)} at or after them)")  # fmt: skip

    def reader(self, cache, name: str) -> tuple[Reader, dict[str, int]]:
        from clinfuse.kinds.ehr.tensors import ehr_reader

        return ehr_reader(cache, name)

    def build_encoder(self, spec):
        from clinfuse.kinds.ehr.encoder import EhrEncoder

        dims = spec.dims
        return EhrEncoder(dims["vocabulary"], dims["labs"], dims["lab_observed"], spec.embed_dim,
                          sequence=spec.architecture)  # fmt: skip

    def baseline_features(self, cache, name: str, embed_dim: int) -> FeatureBlock:
        from clinfuse.kinds.ehr.tensors import ehr_block

        return ehr_block(cache, name)

    def attribution_context(self, cache, name: str, background: np.ndarray | None):
        from clinfuse.kinds.ehr.ingest import CODE_TEXTS_FILE
        from clinfuse.models.explain.within_modality import AttributionContext

        alignment = cache.json(name, "alignment")
        texts = cache.json(name, CODE_TEXTS_FILE.removesuffix(".json"))
        return AttributionContext(vocabulary=alignment["vocabulary"], lab_items=alignment["lab_items"], texts=texts)

    def attribute(self, branch, inputs, context):
        from clinfuse.kinds.ehr.attribution import ehr_attribution

        return ehr_attribution(branch, inputs, context)

    def render_section(self, section: SectionData) -> bool:
        from clinfuse.kinds.ehr.section import render_ehr_section

        render_ehr_section(section)
        return True

    def prepare_section(self, cache, name: str) -> None:
        from clinfuse.kinds.ehr.section import events_of_every_patient

        events_of_every_patient(cache, name)

    def request_cell(self, config, patient_id: str):
        from clinfuse.kinds.ehr.request import ehr_request_cell

        return ehr_request_cell(config, patient_id)

    def write_request_source(self, settings, cells, folder: Path):
        from clinfuse.kinds.ehr.request import write_ehr_request

        return write_ehr_request(settings, cells, folder)
