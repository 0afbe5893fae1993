"""The `waveform` modality kind: 12-lead ECGs (WFDB records, DICOM waveform objects) read by a 1D ResNet.

Parts: config.py (cohort.yaml fields), source.py (find, link and read recordings), preprocess.py (resample,
band-pass, fixed length, mV), ingest.py, encoder.py, baseline.py (interpretable features for XGBoost),
attribution.py (integrated gradients per lead and time), section.py (the dashboard's ECG plot).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from clinfuse.kinds.waveform.config import WaveformModality
from clinfuse.platform.kinds.base import FeatureBlock, ModalityKind, Reader, SectionData

if TYPE_CHECKING:
    from clinfuse.models.encoders.registry import EncoderSpec
    from clinfuse.models.explain.within_modality import Attribution, AttributionContext
    from clinfuse.models.fusion import ModalityBranch
    from clinfuse.platform.cache import FeatureCache
    from clinfuse.platform.ingest.cohort_table import Cohort
    from clinfuse.platform.ingest.context import IngestContext, ModalityOutput
    from torch import Tensor, nn


class WaveformKind(ModalityKind):
    name: ClassVar[str] = "waveform"
    label: ClassVar[str] = "ECG"
    config_model: ClassVar[type[WaveformModality]] = WaveformModality
    architectures: ClassVar[tuple[str, ...]] = ("resnet1d", "resnet1d_small")
    default_architectures: ClassVar[dict[str, str]] = {"cpu": "resnet1d_small", "gpu": "resnet1d"}

    def ingest(self, config: Any, cohort: Cohort, out: Path, context: IngestContext) -> ModalityOutput:
        from clinfuse.kinds.waveform.ingest import ingest_waveform

        return ingest_waveform(config, cohort, out, context)

    def why_absent(self, report: dict) -> str:
        return (f"{report.get('patients_present', 0)} patients with a readable ECG before their index time "
                f"({report.get('recordings_linked', 0)} recordings linked to patients, "
                f"{report.get('recordings_at_or_after_index_excluded', 0)} at or after the index time)")  # fmt: skip

    def reader(self, cache: FeatureCache, name: str) -> tuple[Reader, dict[str, int]]:
        signals = cache.array(name, "signals")
        shape = signals.shape[1:]

        def read(row: int) -> dict[str, np.ndarray]:
            if row < 0:
                return {"signal": np.zeros(shape, np.float32)}
            return {"signal": np.array(signals[row], dtype=np.float32)}  # a copy: tensors need writable memory

        return read, {"leads": int(shape[0]), "samples": int(shape[1])}

    def build_encoder(self, spec: EncoderSpec) -> nn.Module:
        from clinfuse.kinds.waveform.encoder import WIDTHS, ResNet1d

        if spec.architecture not in WIDTHS:
            raise ValueError(f"unknown waveform encoder '{spec.architecture}'")
        return ResNet1d(spec.dims["leads"], spec.embed_dim, WIDTHS[spec.architecture])

    def baseline_features(self, cache: FeatureCache, name: str, embed_dim: int) -> FeatureBlock:
        from clinfuse.kinds.waveform.baseline import ecg_features, feature_names

        signals = cache.array(name, "signals")
        settings = cache.json(name, "alignment")
        rate = int(settings["sampling_rate"])

        def values(rows: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
            return ecg_features(np.asarray(signals[np.asarray(rows, np.int64)]), rate)

        return FeatureBlock(feature_names(list(settings["leads"])), values)

    def attribution_context(self, cache: FeatureCache, name: str, background: np.ndarray | None
                            ) -> AttributionContext:  # fmt: skip
        from clinfuse.kinds.waveform.attribution import WaveformAttributionContext

        settings = cache.json(name, "alignment")
        return WaveformAttributionContext(leads=list(settings["leads"]), sampling_rate=int(settings["sampling_rate"]))

    def attribute(self, branch: ModalityBranch, inputs: dict[str, Tensor], context: AttributionContext
                  ) -> Attribution:  # fmt: skip
        from clinfuse.kinds.waveform.attribution import waveform_attribution

        return waveform_attribution(branch, inputs, context)

    def describe_source(self, cache: FeatureCache, name: str, row: int) -> dict:
        """The recording's format, original rate and missing leads (no ids, no paths)."""
        entry = cache.json(name, "recordings")["rows"][row]
        return {key: entry[key] for key in ("format", "original_rate", "leads_missing", "days_before_index")}

    def render_section(self, section: SectionData) -> bool:
        from clinfuse.kinds.waveform.section import render_ecg_section

        return render_ecg_section(section)
