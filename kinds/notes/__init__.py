"""The `notes` modality kind: free-text clinical notes from before the index time.

A word-level tokenizer and TF-IDF statistics fitted on the training patients (frozen for scoring), a CNN over
word n-grams (or a small transformer), TF-IDF columns in the XGBoost baseline, integrated gradients per token,
and the notes shown with their words shaded on the dashboard. The parts live in this package's modules, imported
where they are used so that loading a config stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from clinfuse.kinds.notes.config import NotesModality
from clinfuse.platform.kinds.base import FeatureBlock, ModalityKind, Reader, SectionData

if TYPE_CHECKING:
    from clinfuse.kinds.notes.attribution import NotesAttributionContext
    from clinfuse.models.encoders.registry import EncoderSpec
    from clinfuse.models.explain.within_modality import Attribution
    from clinfuse.models.fusion import ModalityBranch
    from clinfuse.platform.cache import FeatureCache
    from clinfuse.platform.ingest.cohort_table import Cohort
    from clinfuse.platform.ingest.context import IngestContext, ModalityOutput
    from torch import Tensor, nn


class NotesKind(ModalityKind):
    name = "notes"
    label = "clinical notes"
    config_model = NotesModality
    architectures = ("cnn", "transformer")
    default_architectures = {"cpu": "cnn", "gpu": "cnn"}

    def ingest(self, config: Any, cohort: Cohort, out: Path, context: IngestContext) -> ModalityOutput:
        from clinfuse.kinds.notes.ingest import ingest_notes

        return ingest_notes(config, cohort, out, context)

    def why_absent(self, report: dict) -> str:
        count = {key: report.get(f"notes_{key}", 0) for key in ("read", "of_patients_not_in_cohort",
                 "at_or_after_index_excluded", "stored_at_or_after_index_excluded")}  # fmt: skip
        return (f"{count['read']} notes read: {count['of_patients_not_in_cohort']} of patients not in the cohort "
                f"table, {count['at_or_after_index_excluded']} charted and "
                f"{count['stored_at_or_after_index_excluded']} stored at or after the index time")  # fmt: skip

    def reader(self, cache: FeatureCache, name: str) -> tuple[Reader, dict[str, int]]:
        from clinfuse.kinds.notes.reader import notes_reader

        return notes_reader(cache, name)

    def build_encoder(self, spec: EncoderSpec) -> nn.Module:
        from clinfuse.kinds.notes.encoder import NotesCNN, NotesTransformer

        if spec.architecture == "cnn":
            return NotesCNN(spec.dims["vocabulary"], spec.embed_dim)
        if spec.architecture == "transformer":
            return NotesTransformer(spec.dims["vocabulary"], spec.dims["max_tokens"], spec.embed_dim)
        raise ValueError(f"unknown notes encoder '{spec.architecture}': use one of {self.architectures}")

    def baseline_features(self, cache: FeatureCache, name: str, embed_dim: int) -> FeatureBlock:
        from clinfuse.kinds.notes.baseline import tfidf_block

        return tfidf_block(cache, name)

    def attribution_context(self, cache: FeatureCache, name: str, background: np.ndarray | None
                            ) -> NotesAttributionContext:  # fmt: skip
        from clinfuse.kinds.notes.alignment import NotesAlignment
        from clinfuse.kinds.notes.attribution import NotesAttributionContext

        return NotesAttributionContext(vocabulary=NotesAlignment.from_json(cache.json(name, "alignment")).vocabulary)

    def attribute(self, branch: ModalityBranch, inputs: dict[str, Tensor], context: NotesAttributionContext
                  ) -> Attribution:  # fmt: skip
        from clinfuse.kinds.notes.attribution import notes_attribution

        return notes_attribution(branch, inputs, context)

    def render_section(self, section: SectionData) -> bool:
        from clinfuse.kinds.notes.section import render

        return render(section)
