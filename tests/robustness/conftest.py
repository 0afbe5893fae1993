"""Shared checks of the robustness suite: run the CLI as a user would, and compare folders before and after.

Every probe ends in one of two ways a user can act on: exit 0 (with a report), or exit 2 with exactly one
`error:` line on stderr. A traceback, any other exit code, or a changed earlier output fails the probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# The fuzz tests' common settings: the same examples on every run (a failure reproduces), no deadline (an
# ingest's time varies with the machine), no example database written to disk.
settings.register_profile("robustness", deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def run_main(args: list[str]) -> Outcome:
    """`clinfuse ARGS` in this process (fast enough for property-based fuzzing); any escaped exception is a
    traceback the user would have seen, so it propagates and fails the test."""
    from clinfuse.pipelines.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["clinfuse", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    finally:
        sys.argv = argv
    return Outcome(code, out.getvalue(), err.getvalue())


def run_cli(args: list[str], timeout: float = 600, **kwargs) -> Outcome:
    """`clinfuse ARGS` as its own process (the installed console script), as an operator runs it."""
    exe = Path(sys.executable).parent / "clinfuse"
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, **kwargs)
    return Outcome(done.returncode, done.stdout, done.stderr)


def assert_user_error(outcome: Outcome, *fragments: str) -> str:
    """Exit 2 and exactly one `error:` line naming the problem (each fragment, case-insensitive); returns it."""
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.code == 2, f"exit {outcome.code}; stderr:\n{outcome.stderr}"
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, f"expected one error line, got:\n{outcome.stderr}"
    for fragment in fragments:
        assert fragment.lower() in errors[0].lower(), f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


def assert_ok_or_user_error(outcome: Outcome) -> None:
    """The fuzzing contract: exit 0, or one `error:` line with exit 2; never a traceback."""
    assert "Traceback" not in outcome.stderr, outcome.stderr
    if outcome.code != 0:
        assert_user_error(outcome)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) by relative path -> sha256; {} when it does not exist."""
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


class Probe:
    """The checks above, handed to tests as the session fixture `probe` (test modules cannot import conftest)."""

    run_main = staticmethod(run_main)
    run_cli = staticmethod(run_cli)
    assert_user_error = staticmethod(assert_user_error)
    assert_ok_or_user_error = staticmethod(assert_ok_or_user_error)
    snapshot = staticmethod(snapshot)


@pytest.fixture(scope="session")
def probe() -> type[Probe]:
    return Probe


# -- one small real cohort (nki_cohort, nki_cache: tests/conftest.py), trained, registered and scored once ------------
# NKI-70's branches are all linear, so a run trains in seconds and a killed command can be rerun several times
# within the suite's budget.
NKI_MODEL = "nki-robustness"


@pytest.fixture(scope="session")
def nki_run(nki_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An evaluated run on the ingest's split (read-only: copy it with shutil.copytree to change it)."""
    from clinfuse.pipelines.evaluation.evaluate import evaluate
    from clinfuse.pipelines.training.train import TrainSettings, train

    run = tmp_path_factory.mktemp("nki-run") / "run"
    train(nki_cache, run, TrainSettings(accelerator="cpu", seed=0))
    evaluate(run, resamples=100)
    return run


@pytest.fixture(scope="session")
def nki_model(nki_run: Path) -> str:
    """nki_run registered (the session's MLflow store under CLINFUSE_HOME) with alias production."""
    from clinfuse.pipelines.registry.store import ModelRegistry

    ModelRegistry().register(nki_run, NKI_MODEL, alias="production")
    return f"models:/{NKI_MODEL}@production"


@pytest.fixture(scope="session")
def nki_scores(nki_model: str, nki_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clinfuse.pipelines.scoring.job import score

    out = tmp_path_factory.mktemp("nki-scores") / "scores.parquet"
    score(nki_model, nki_cohort, out, workers=1, chunk_size=50)
    return out
