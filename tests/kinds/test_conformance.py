"""Conformance of the modality kinds, in the spirit of scikit-learn's check_estimator.

Static: every installed kind passes `check_kind`, and a kind lacking a part is refused with that part named.
End to end: a tiny cohort holding one modality of every installed kind (the demo generator's, so a kind without
demo data fails here) goes through ingest -> train (1 epoch) -> explain -> score -> the dashboard section, and each
kind's part is checked at each step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.kinds import KindConfig, ModalityKind, check_kind, get_kind, kinds, use_kinds

TINY_PATIENTS = 90


# ---------------------------------------------------------------- static checks


@pytest.mark.parametrize("name", sorted(kinds()))
def test_every_installed_kind_provides_every_part(name: str) -> None:
    kind = get_kind(name)
    check_kind(kind)
    assert kind.name == name


class _MadeUpConfig(KindConfig):
    kind: Literal["made_up"]


def _made_up_kind(**overrides: object) -> ModalityKind:
    """A complete made-up kind (every part present), then with `overrides` applied to its class."""

    class MadeUp(ModalityKind):
        name = "made_up"
        label = "made up"
        config_model = _MadeUpConfig
        architectures = ("tiny",)
        default_architectures = {"cpu": "tiny", "gpu": "tiny"}

        def ingest(self, config, cohort, out, context): ...
        def reader(self, cache, name): ...
        def build_encoder(self, spec): ...
        def baseline_features(self, cache, name, embed_dim): ...
        def attribution_context(self, cache, name, background): ...
        def attribute(self, branch, inputs, context): ...

    kind = MadeUp()  # instantiated while complete: Python itself refuses to build an incomplete one
    for attribute, value in overrides.items():
        if value is None:
            delattr(MadeUp, attribute)
        else:
            setattr(MadeUp, attribute, value)
    MadeUp.__abstractmethods__ = frozenset(a for a in ModalityKind.__abstractmethods__ if a not in vars(MadeUp))
    return kind


def test_a_complete_made_up_kind_passes_and_becomes_usable() -> None:
    kind = _made_up_kind()
    check_kind(kind)
    with use_kinds(kind):
        assert get_kind("made_up") is kind
    with pytest.raises(ClinFuseError, match="not installed"):
        get_kind("made_up")


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"attribute": None}, "does not implement attribute"),
        ({"baseline_features": None}, "does not implement baseline_features"),
        ({"ingest": None}, "does not implement ingest"),
        ({"label": None}, "lacks label"),
        ({"default_architectures": {"cpu": "tiny", "gpu": "huge"}}, "default gpu architecture 'huge'"),
        ({"architectures": ()}, "names no encoder architecture"),
        ({"worker_modules": ("no_such_package.sub",)}, "worker_modules no_such_package.sub cannot be"),
        ({"name": "Made Up"}, "not a lower-case identifier"),
        ({"name": "other"}, "must be Literal['other']"),
    ],
)
def test_a_kind_lacking_a_part_is_refused_naming_it(overrides: dict, named: str) -> None:
    with pytest.raises(ClinFuseError, match=named.replace("[", r"\[").replace("]", r"\]")):
        check_kind(_made_up_kind(**overrides))


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every installed kind's modality in one small demo cohort, ingested, trained one epoch, registered, scored."""
    from clinfuse.pipelines.evaluation.evaluate import evaluate
    from clinfuse.pipelines.registry.store import ModelRegistry
    from clinfuse.pipelines.scoring.job import score
    from clinfuse.pipelines.training.train import TrainSettings, train
    from clinfuse.platform.demo import generate_demo_cohort
    from clinfuse.platform.demo.latent import MODALITY_NAMES, OPTIONAL_MODALITIES
    from clinfuse.platform.ingest import ingest

    root = tmp_path_factory.mktemp("conformance")
    every = MODALITY_NAMES + OPTIONAL_MODALITIES
    generate_demo_cohort(root / "cohort", patients=TINY_PATIENTS, seed=4, modalities=every)
    ingest(root / "cohort" / "cohort.yaml", root / "cache", workers=1)
    train(root / "cache", root / "run", TrainSettings(max_epochs=1, accelerator="cpu", seed=0, patience=1))
    evaluate(root / "run", resamples=20)
    ModelRegistry().register(root / "run", "conformance")
    score("models:/conformance/1", root / "cohort" / "cohort.yaml", root / "scores.parquet", explain=True)
    return {"root": root, "cache": root / "cache", "run": root / "run", "scores": root / "scores.parquet"}


def _modality_of(cache_path: Path, kind: str) -> str:
    from clinfuse.platform.cache import FeatureCache

    names = [name for name, k in FeatureCache(cache_path).modalities.items() if k == kind]
    assert names, f"kind '{kind}' has no modality in the demo cohort: add it to the demo generator"
    return names[0]


@pytest.mark.parametrize("kind_name", sorted(kinds()))
def test_ingest_writes_patients_and_a_frozen_alignment(tiny: dict, kind_name: str) -> None:
    from clinfuse.platform.cache import FeatureCache

    cache = FeatureCache(tiny["cache"])
    name = _modality_of(tiny["cache"], kind_name)
    assert (cache.rows(name) >= 0).sum() > 0
    assert cache.report["modalities"][name]["patients_present"] == (cache.rows(name) >= 0).sum()
    reader, dims = get_kind(kind_name).reader(cache, name)
    present, absent = reader(int(cache.rows(name).max())), reader(-1)
    assert present.keys() == absent.keys() and dims
    for key, value in present.items():
        assert value.shape == absent[key].shape and np.isfinite(value.astype(np.float64)).all(), key
        assert not absent[key].any(), f"an absent patient's {key} must be zeros"


@pytest.mark.parametrize("kind_name", sorted(kinds()))
def test_train_builds_the_kind_encoder_and_baseline_columns(tiny: dict, kind_name: str) -> None:
    import json

    from clinfuse.models.baseline import XGBoostBaseline
    from clinfuse.pipelines.training import run_files

    name = _modality_of(tiny["cache"], kind_name)
    info = json.loads((tiny["run"] / run_files.RUN_INFO).read_text())
    assert info["architectures"][name] in get_kind(kind_name).architectures
    baseline = XGBoostBaseline.load(tiny["run"] / run_files.XGBOOST_MODEL)
    assert any(feature.startswith(f"{name}:") for feature in baseline.feature_names)


@pytest.mark.parametrize("kind_name", sorted(kinds()))
def test_explain_gives_finite_attributions_inside_the_modality(tiny: dict, kind_name: str) -> None:
    from clinfuse.pipelines.explain import RunExplainer
    from clinfuse.platform.cache import FeatureCache

    name = _modality_of(tiny["cache"], kind_name)
    cache = FeatureCache(tiny["cache"])
    patient = cache.cohort.loc[cache.rows(name) >= 0, "patient"].iloc[0]
    explanation = RunExplainer(tiny["run"]).explain(patient, store_heatmaps=False)
    entry = explanation.within[name]
    assert entry["top"] or entry["heatmap_array"] is not None
    assert all(math.isfinite(item["value"]) for item in entry["top"])
    if entry["heatmap_array"] is not None:
        assert np.isfinite(entry["heatmap_array"]).all()
    assert name in explanation.modality.logit_values


@pytest.mark.parametrize("kind_name", sorted(kinds()))
def test_scoring_scores_patients_with_the_modality(tiny: dict, kind_name: str) -> None:
    name = _modality_of(tiny["cache"], kind_name)
    scores = pd.read_parquet(tiny["scores"])
    with_modality = scores[scores["modalities_present"].str.split("+").map(lambda present: name in present)]
    assert len(with_modality) > 0 and with_modality["risk"].between(0, 1).all()


def _section_app(cache_path: str, modality: str, kind_name: str, patient: str, run: str) -> None:
    """Prepare and render one kind's dashboard section the way the dashboard does (a streamlit script)."""
    import streamlit as st
    from clinfuse.pipelines.explain import RunExplainer
    from clinfuse.platform.cache import FeatureCache
    from clinfuse.platform.kinds import SectionData, get_kind

    cache = FeatureCache(cache_path)
    explanation = RunExplainer(__import__("pathlib").Path(run)).explain(patient, store_heatmaps=False)
    raw = explanation.within[modality]
    entry = {"kind": raw["kind"], "top": raw["top"], "heatmap": raw["heatmap_array"], "detail": raw["detail"],
             "source_geometry": raw.get("source_geometry")}  # fmt: skip
    row = int(cache.rows(modality)[cache.cohort.index[cache.cohort["patient"] == patient][0]])
    kind = get_kind(kind_name)
    kind.prepare_section(cache, modality)  # as the dashboard's warm-up does, before any page
    drawn = kind.render_section(SectionData(modality, patient, row, cache, entry))
    st.write(f"section drawn: {drawn}")


@pytest.mark.parametrize("kind_name", sorted(kinds()))
def test_the_dashboard_section_renders(tiny: dict, kind_name: str) -> None:
    from clinfuse.platform.cache import FeatureCache
    from streamlit.testing.v1 import AppTest

    name = _modality_of(tiny["cache"], kind_name)
    cache = FeatureCache(tiny["cache"])
    patient = str(cache.cohort.loc[cache.rows(name) >= 0, "patient"].iloc[0])
    app = AppTest.from_function(_section_app, args=(str(tiny["cache"]), name, kind_name, patient, str(tiny["run"])),
                                default_timeout=120)  # fmt: skip
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    assert any("section drawn: True" in m.value for m in app.markdown)
