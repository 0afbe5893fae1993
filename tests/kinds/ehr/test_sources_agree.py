"""The same demo patients rendered as MIMIC-IV, OMOP, MEDS and FHIR give identical EHR features, and an EHR
model trained with one seed on each gives identical predictions: nothing after the reader knows the source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from clinfuse.kinds.ehr.ingest import ARRAY_FILES
from clinfuse.models.encoders.registry import EncoderSpec
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.ingest import ingest
from clinfuse.platform.kinds import get_kind

FORMATS = ("mimic4", "omop", "meds", "fhir")


@pytest.fixture(scope="module")
def caches(ehr_format_demos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The session's demo per EHR format (tests/conftest.py), ingested with the EHR modality only."""
    caches = {}
    for ehr_format in FORMATS:
        root = tmp_path_factory.mktemp(f"ehr-only-{ehr_format}")
        config = yaml.safe_load((ehr_format_demos[ehr_format] / "cohort.yaml").read_text())
        config["modalities"] = [m for m in config["modalities"] if m["kind"] == "ehr"]
        config["cohort"]["path"] = str(ehr_format_demos[ehr_format] / config["cohort"]["path"])
        config["modalities"][0]["path"] = str(ehr_format_demos[ehr_format] / config["modalities"][0]["path"])
        (root / "ehr-only.yaml").write_text(yaml.safe_dump(config))
        caches[ehr_format] = root / "cache"
        ingest(root / "ehr-only.yaml", caches[ehr_format], workers=1)
    return caches


def test_every_rendering_gives_identical_ehr_features(caches: dict[str, Path]) -> None:
    reference = FeatureCache(caches["mimic4"])
    assert reference.report["modalities"]["ehr"]["patients_present"] > 30
    for ehr_format in FORMATS[1:]:
        cache = FeatureCache(caches[ehr_format])
        assert cache.report["modalities"]["ehr"]["source"] == ehr_format
        assert cache.cohort.equals(reference.cohort), ehr_format
        assert cache.json("ehr", "alignment") == reference.json("ehr", "alignment"), ehr_format
        for name in ARRAY_FILES:
            expected, actual = np.asarray(reference.array("ehr", name)), np.asarray(cache.array("ehr", name))
            assert actual.dtype == expected.dtype and np.array_equal(actual, expected), f"{ehr_format}: {name}"
        assert cache.json("ehr", "code_texts").keys() == reference.json("ehr", "code_texts").keys()


def _trained_predictions(cache_path: Path) -> torch.Tensor:
    """The kind's EHR encoder and a logistic head, trained 40 steps with one seed, predicting every patient."""
    cache = FeatureCache(cache_path)
    kind = get_kind("ehr")
    read, dims = kind.reader(cache, "ehr")
    rows = cache.cohort.loc[cache.cohort["present_ehr"]]
    inputs = [read(int(r)) for r in rows["row_ehr"]]
    batch = {key: torch.as_tensor(np.stack([i[key] for i in inputs])) for key in inputs[0]}
    labels = torch.as_tensor(rows["label"].to_numpy(np.float32))
    torch.manual_seed(0)
    encoder = kind.build_encoder(EncoderSpec(kind="ehr", architecture="gru", embed_dim=16, dims=dims))
    head = torch.nn.Linear(16, 1)
    optimiser = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(40):
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(encoder(batch)).squeeze(-1), labels)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return torch.sigmoid(head(encoder(batch)).squeeze(-1))


def test_a_model_trained_with_one_seed_predicts_identically_from_every_rendering(caches: dict[str, Path]) -> None:
    reference = _trained_predictions(caches["mimic4"])
    assert reference.std() > 0, "the model learned something patient-specific"
    for ehr_format in FORMATS[1:]:
        assert torch.equal(_trained_predictions(caches[ehr_format]), reference), ehr_format
