"""Explaining one patient of the demo run: structure, exactness, absent modalities, stored heatmap, CLI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from clinfuse.pipelines.explain import RunExplainer
from clinfuse.platform.cache import FeatureCache
from clinfuse.platform.demo.vocabulary import PLANTED_GENES
from clinfuse.platform.errors import ClinFuseError


def _explain_truth():
    """tests/benchmarks/explain_truth.py, loaded as a module (tests/ is not a package)."""
    path = Path(__file__).parents[1] / "benchmarks" / "explain_truth.py"
    spec = importlib.util.spec_from_file_location("explain_truth", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def explainer(demo_run: Path) -> RunExplainer:
    return RunExplainer(demo_run, top_k=10)


def _patient_with(cache: FeatureCache, present: dict[str, bool]) -> str:
    cohort = cache.cohort
    rows = np.ones(len(cohort), bool)
    for name, wanted in present.items():
        rows &= cohort[f"present_{name}"].to_numpy() == wanted
    return str(cohort.loc[rows, "patient"].iloc[0])


def test_full_patient_explanation_is_exact_and_complete(explainer: RunExplainer, demo_run: Path) -> None:
    patient = _patient_with(explainer.cache, {"imaging": True, "genomics": True, "ehr": True})
    explanation = explainer.explain(patient)
    shapley = explanation.modality
    assert set(shapley.logit_values) == {"imaging", "genomics", "ehr"} and shapley.absent == []
    assert abs(shapley.logit_base + sum(shapley.logit_values.values()) - shapley.logit_prediction) < 1e-5
    assert abs(shapley.probability_prediction - explanation.risk) < 1e-6
    genes = explanation.within["genomics"]["top"]
    assert len(genes) == 10 and all(isinstance(g["value"], float) for g in genes)
    assert {g["name"] for g in genes} <= set(explainer.contexts["genomics"].feature_names)
    ehr = explanation.within["ehr"]["top"]
    assert ehr and any(t["text"] for t in ehr if t["name"].startswith("ICD10CM:")), "ICD codes carry their title"
    heatmap = np.load(demo_run / explanation.within["imaging"]["heatmap"])
    size = FeatureCache(explainer.cache.path).array("imaging", "images").shape[-1]
    assert heatmap.shape == (size, size) and np.isfinite(heatmap.astype(float)).all()
    assert explanation.within["imaging"]["source_geometry"]["size"] == size
    xgb = explanation.xgboost
    assert abs(xgb["logit_base"] + sum(xgb["logit_values"].values()) - xgb["logit_prediction"]) < 1e-4


def test_absent_modality_is_reported_absent_not_zero(explainer: RunExplainer) -> None:
    patient = _patient_with(explainer.cache, {"imaging": False})
    explanation = explainer.explain(patient, store_heatmaps=False)
    assert "imaging" in explanation.modality.absent
    assert "imaging" not in explanation.modality.logit_values and "imaging" not in explanation.within
    assert "imaging" in explanation.xgboost["absent"]


def test_unknown_patient_is_a_clear_error(explainer: RunExplainer) -> None:
    with pytest.raises(ClinFuseError, match="not in the run's cohort"):
        explainer.explain("nobody")


def test_cli_prints_json(demo_run: Path, clinfuse_exe: Path, explainer: RunExplainer) -> None:
    patient = str(explainer.cache.cohort.loc[explainer.cache.cohort["split"] == "test", "patient"].iloc[0])
    result = subprocess.run([str(clinfuse_exe), "explain", "--run", str(demo_run), "--patient", patient, "--json"],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert data["patient"] == patient and 0 <= data["risk"] <= 1
    assert set(data["modality"]) >= {"logit_values", "logit_base", "probability_values", "absent"}


def test_truth_check_figures_are_computed(demo_run: Path, demo_cohort: Path) -> None:
    result = _explain_truth().check_against_truth(demo_run, demo_cohort, split="test", limit=25)
    dominant = result["dominant_modality_first"]
    assert dominant["n"] > 0 and 0 <= dominant["fraction"] <= 1 and 0 < dominant["chance"] <= 1
    genes = result["planted_genes_in_top20"]
    assert genes["n"] > 0 and 0 <= genes["mean_recall"] <= 1
    assert genes["chance"] == pytest.approx(20 / 1000)
    assert len(PLANTED_GENES) == 20
