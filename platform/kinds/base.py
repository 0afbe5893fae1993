"""`ModalityKind`: everything ClinFuse needs to ingest, learn from, explain and show one kind of data.

A kind is one object bundling its parts, one per stage of the pipeline:

| part | stage | what it does |
| --- | --- | --- |
| `config_model` | cohort.yaml | the modality's fields (a `KindConfig`), validated when the config loads |
| `ingest` | `clinfuse ingest` | source files -> the modality's folder of the feature cache (+ a frozen alignment) |
| `reader` | training, scoring | cache row -> the encoder's input tensors (zeros when absent) |
| `build_encoder`, `architectures`, `default_architectures` | training | the encoder per architecture; defaults |
| `baseline_features` | XGBoost baseline | named feature columns per patient |
| `attribution_context`, `attribute` | explanations | attributions inside the modality, on its branch logit |
| `render_section` | dashboard | the patient page's section (a generic one when the kind has none) |

Optional parts have defaults here: `augmenter` (training-time augmentation), `feature_table` (kinds whose input is
one feature vector per patient: linear/tree branch selection, input screening and the SHAP background of
k-means centroids apply to them),
`describe_source` (facts about the source shown beside an attribution), `why_absent`, and the serving pair
`request_cell` / `write_request_source` (one patient's data as a cell of an online scoring request, and back into a
source the kind ingests: kinds without them are scored in batch only).

The methods that need torch, scipy or streamlit import them where they run, so loading a config never imports a
model library. Kinds are found through the `clinfuse.kinds` entry points (`registry.py`); `check_kind` says
which part a kind lacks, and tests/kinds/test_conformance.py runs every registered kind end to end.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds.config import KindConfig

if TYPE_CHECKING:  # the parts' argument types; importing them here would pull torch into config loading
    import pandas as pd
    from clinfuse.models.encoders.registry import EncoderSpec
    from clinfuse.models.explain.within_modality import Attribution, AttributionContext
    from clinfuse.models.fusion import ModalityBranch
    from clinfuse.platform.cache import FeatureCache
    from clinfuse.platform.ingest.cohort_table import Cohort
    from clinfuse.platform.ingest.context import IngestContext, ModalityOutput
    from torch import Tensor, nn


class NoSourceData(ClinFuseError):
    """The site's source holds nothing of the requested patient for this modality (a missing modality)."""


Reader = Callable[[int], dict[str, np.ndarray]]  # modality row (-1: absent) -> the encoder's input arrays


class Augmenter(Protocol):
    """Random training-time changes of one patient's inputs; `reseed` gives each loader worker its own stream."""

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def reseed(self, seed: int) -> None: ...


@dataclass(frozen=True)
class FeatureBlock:
    """A kind's columns in the XGBoost baseline: their names and, for present patients given by their modality
    rows (with this modality's embedding from the trained encoder, in the same order), their values."""

    names: list[str]
    values: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (rows (n,), embeddings (n, D)) -> (n, len(names))


@dataclass(frozen=True)
class SectionData:
    """What a kind's dashboard section receives for one present patient."""

    modality: str
    patient: str  # pseudonym
    row: int  # the patient's row in the modality's cache arrays (>= 0)
    cache: FeatureCache  # the scoring feature cache, read-only
    entry: dict  # the within-modality explanation: kind, top, heatmap (array or None), detail, source_geometry


class ModalityKind(ABC):
    """One kind of modality data. Subclasses set the class attributes and implement the abstract parts."""

    name: ClassVar[str]  # the `kind:` value in cohort.yaml
    label: ClassVar[str]  # how the dashboard names the kind ("image", "clinical notes")
    config_model: ClassVar[type[KindConfig]]
    architectures: ClassVar[tuple[str, ...]]
    default_architectures: ClassVar[dict[str, str]]  # {"cpu": ..., "gpu": ...}, both in `architectures`
    channels_last: ClassVar[bool] = False  # inputs are images: channels-last memory on GPU
    # modules a Dask worker imports before it is counted ready for this kind's ingest work: lazy imports that its
    # first task would otherwise pay while the client, having handed the work over, waits
    worker_modules: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def ingest(self, config: Any, cohort: Cohort, out: Path, context: IngestContext) -> ModalityOutput:
        """Read the source, keep data from before each patient's index time, write the modality's cache folder.
        With `context.alignment` (scoring) apply that frozen alignment instead of fitting one on `train`."""

    def why_absent(self, report: dict) -> str:
        """Why the modality found none of the cohort's patients, from its ingest report (for the error)."""
        return f"{report.get('patients_present', 0)} patients with usable data"

    @abstractmethod
    def reader(self, cache: FeatureCache, name: str) -> tuple[Reader, dict[str, int]]:
        """A reader of cache rows and the input dimensions the encoder is built with."""

    def augmenter(self, seed: int) -> Augmenter | None:
        """Training-time augmentation of one patient's inputs, or None (inputs used as stored)."""
        return None

    def feature_table(self, cache: FeatureCache, name: str) -> pd.DataFrame | None:
        """The modality as one row of named features per patient ('patient' column first), or None."""
        return None

    @abstractmethod
    def build_encoder(self, spec: EncoderSpec) -> nn.Module:
        """The encoder for `spec.architecture` (one of `architectures`), mapping inputs to `spec.embed_dim`."""

    @abstractmethod
    def baseline_features(self, cache: FeatureCache, name: str, embed_dim: int) -> FeatureBlock:
        """The modality's columns in the XGBoost baseline (read what is needed once: scoring asks per chunk)."""

    @abstractmethod
    def attribution_context(self, cache: FeatureCache, name: str, background: np.ndarray | None
                            ) -> AttributionContext:  # fmt: skip
        """Names, texts and background the attributions of this modality need (read once per explainer).
        `background`: for kinds with a feature table, k-means centroids of the training rows stored with the model."""

    @abstractmethod
    def attribute(self, branch: ModalityBranch, inputs: dict[str, Tensor], context: AttributionContext
                  ) -> Attribution:  # fmt: skip
        """Attributions of one patient (a batch of one) on the branch's logit."""

    def describe_source(self, cache: FeatureCache, name: str, row: int) -> dict:
        """Facts about the patient's source data stored beside the attribution (e.g. the image's geometry)."""
        return {}

    def render_section(self, section: SectionData) -> bool:
        """Draw the patient's section on the dashboard (streamlit); False: the dashboard draws a generic one."""
        return False

    def prepare_section(self, cache: FeatureCache, name: str) -> None:
        """Load what `render_section` reads for every patient (the dashboard calls it once at start, in the
        background), so that the first patient page does not wait for it."""
        return None

    def request_cell(self, config: Any, patient_id: str) -> Any:
        """One patient's data from the site's own source (`config`: the site's modality config) as the JSON value
        of this modality's cell in an online scoring request (docs/serving.md); NoSourceData when there is none."""
        raise ClinFuseError(f"modality kind '{self.name}' cannot be sent in an online scoring request",
                            "score these patients in batch with `clinfuse score`")  # fmt: skip

    def write_request_source(self, settings: dict[str, Any], cells: dict[str, Any], folder: Path) -> dict[str, Any]:
        """Write the cells of an online scoring request (source patient id -> this modality's cell; possibly none)
        into the empty `folder` as a source this kind ingests, and return the site fields of the modality's config
        that point at it. `settings`: the model's preprocessing of the modality (its config without site fields).
        A malformed cell is a ClinFuseError naming the problem, never a patient id."""
        raise ClinFuseError(f"modality kind '{self.name}' cannot be scored from an online request",
                            "score these patients in batch with `clinfuse score`")  # fmt: skip
