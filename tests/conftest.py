"""Shared fixtures: one small demo cohort per test session, generated locally (no network)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from clinfuse.platform.demo import generate_demo_cohort

DEMO_PATIENTS = 300
DEMO_SEED = 11


@pytest.fixture(scope="session", autouse=True)
def clinfuse_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys and local state of the whole session live in a temporary CLINFUSE_HOME, never in ~/.clinfuse."""
    home = tmp_path_factory.mktemp("clinfuse-home")
    os.environ["CLINFUSE_HOME"] = str(home)
    return home


@pytest.fixture(autouse=True)
def restore_main_module():
    """Streamlit's AppTest (dashboard tests, the kinds' section conformance) runs a script as `__main__` and leaves
    it in sys.modules; a later test that spawns processes (Dask workers) would then re-run that script in every
    child. Put the real `__main__` back after each test."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def demo_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300-patient demo cohort; tests must not modify it (copy it with `demo_cohort_copy`)."""
    out = tmp_path_factory.mktemp("demo") / "cohort"
    generate_demo_cohort(out, patients=DEMO_PATIENTS, seed=DEMO_SEED)
    return out


@pytest.fixture(scope="session")
def ehr_format_demos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One 40-patient demo cohort per EHR layout (same seed; mimic4 through the default); tests must not modify
    them."""
    root = tmp_path_factory.mktemp("ehr-formats")
    generate_demo_cohort(root / "mimic4", patients=40, seed=8)
    for name in ("omop", "meds", "fhir"):
        generate_demo_cohort(root / name, patients=40, seed=8, ehr_format=name)
    return {name: root / name for name in ("mimic4", "omop", "meds", "fhir")}


@pytest.fixture
def demo_cohort_copy(demo_cohort: Path, tmp_path: Path) -> Path:
    """A private copy of the demo cohort that a test may change."""
    target = tmp_path / "cohort"
    shutil.copytree(demo_cohort, target)
    return target


@pytest.fixture(scope="session")
def demo_truth(demo_cohort: Path) -> dict:
    return json.loads((demo_cohort / "ground_truth.json").read_text())


@pytest.fixture(scope="session")
def clinfuse_exe() -> Path:
    """The installed `clinfuse` console script of the running interpreter's environment."""
    return Path(sys.executable).parent / "clinfuse"


@pytest.fixture(scope="session")
def demo_cache(demo_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo cohort ingested once into a feature cache (PyHealth, DICOM decoding and all)."""
    from clinfuse.platform.ingest import ingest

    cache = tmp_path_factory.mktemp("cache") / "features"
    ingest(demo_cohort / "cohort.yaml", cache, workers=1)
    return cache


@pytest.fixture(scope="session")
def demo_run(demo_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short CPU training run on the demo cache (a few epochs: enough to exercise every artifact)."""
    from clinfuse.pipelines.training.train import TrainSettings, train

    run = tmp_path_factory.mktemp("run") / "run"
    train(demo_cache, run, TrainSettings(max_epochs=3, accelerator="cpu", seed=1, patience=3))
    return run


@pytest.fixture(scope="session")
def registered_model(demo_run: Path) -> str:
    """demo_run evaluated and registered (MLflow sqlite store in the session's CLINFUSE_HOME) as
    `demo` version 1 with alias production; returns its reference."""
    from clinfuse.pipelines.evaluation.evaluate import evaluate
    from clinfuse.pipelines.registry.store import ModelRegistry

    if not (demo_run / "metrics.json").is_file():
        evaluate(demo_run, resamples=200)
    ModelRegistry().register(demo_run, "demo", alias="production")
    return "models:/demo@production"


SCORE_CHUNK_SIZE = 40


@pytest.fixture(scope="session")
def demo_scores(registered_model: str, demo_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo cohort scored with explanations by the registered model with `--workers 2`: a job this small is
    scored in this process, local workers would only add their start-up (test_scoring.py scores on a cluster)."""
    from clinfuse.pipelines.scoring.job import score

    out = tmp_path_factory.mktemp("scores") / "scores.parquet"
    score(registered_model, demo_cohort / "cohort.yaml", out, explain=True, workers=2, chunk_size=SCORE_CHUNK_SIZE)
    return out


REAL_COHORTS = Path(__file__).parent / "benchmarks" / "real_cohorts.py"


def _real_cohorts():
    """tests/benchmarks/real_cohorts.py (survset's public cohorts as ClinFuse cohorts), loaded as a module."""
    spec = importlib.util.spec_from_file_location("real_cohorts", REAL_COHORTS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def nki_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cohort.yaml of the real NKI-70 cohort (139 patients, 70 genes + clinical); read-only."""
    return _real_cohorts().write_cohort("nki70", tmp_path_factory.mktemp("nki70") / "cohort")


@pytest.fixture(scope="session")
def nki_cache(nki_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NKI-70 ingested once per test session; read-only."""
    from clinfuse.platform.ingest import ingest

    cache = tmp_path_factory.mktemp("nki-cache") / "cache"
    ingest(nki_cohort, cache, workers=1)
    return cache
