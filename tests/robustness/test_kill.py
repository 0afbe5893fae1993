"""Fault injection: each long command is SIGKILLed at several points (found by watching the files it writes);
the next run either refuses the partial output or produces output identical to an uninterrupted run, and the
previous output is untouched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

EXE = Path(sys.executable).parent / "clinfuse"


def _kill_when(args: list[str], ready: Callable[[], bool], settle_s: float = 0.0, env: dict | None = None) -> None:
    """Start `clinfuse ARGS`, SIGKILL it `settle_s` after `ready()` first holds; fails if it ended before."""
    process = subprocess.Popen([str(EXE), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, **(env or {})})  # fmt: skip
    deadline = time.monotonic() + 600
    try:
        while not ready():
            assert process.poll() is None, f"ended before the kill point: {process.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "kill point never reached"
            time.sleep(0.02)
        time.sleep(settle_s)
        assert process.poll() is None, "ended before the kill"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


def _staged(out: Path, name: str | None = None) -> Callable[[], bool]:
    """True once a staging folder of `out` exists (holding `name`, when given)."""

    def ready() -> bool:
        stagings = out.parent.glob(f".{out.name}.staging-*")
        return any(name is None or (staging / name).exists() for staging in stagings)

    return ready


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


def _ok(args: list[str], env: dict | None = None) -> str:
    done = subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def test_train_killed_at_any_point_keeps_the_previous_run(nki_run, nki_cache, tmp_path, probe) -> None:
    from clinfuse.pipelines.registry.model_folder import open_model

    run = tmp_path / "run"
    shutil.copytree(nki_run, run)
    before = probe.snapshot(run)
    args = ["train", "--cache", str(nki_cache), "--out", str(run), "--split", "--accelerator", "cpu"]
    for ready, settle in ((_staged(run), 1.0), (_staged(run, "model.safetensors"), 0.0),
                          (_staged(run, "predictions.parquet"), 0.0)):  # fmt: skip
        _kill_when(args, ready, settle)
        assert probe.snapshot(run) == before  # the previous run, untouched and still verified
        open_model(run)
        assert _leftovers(run)  # the killed writer's staging folder, until the next run sweeps it
    _ok(args)
    assert _leftovers(run) == []
    pd.testing.assert_frame_equal(pd.read_parquet(run / "predictions.parquet"),
                                  pd.read_parquet(nki_run / "predictions.parquet"))  # fmt: skip
    assert not (run / "metrics.json").exists()  # a new run: the old evaluation does not carry over
    probe.assert_user_error(probe.run_main(["models", "register", str(run), "--name", "x"]), "clinfuse evaluate")


def _cache_files(cache: Path, probe) -> dict[str, str]:
    """A cache's content, without what records when and how fast it was written."""
    return {k: v for k, v in probe.snapshot(cache).items() if k not in ("manifest.json", "ingest_report.json")}


def test_ingest_killed_at_any_point_keeps_the_previous_cache(demo_cohort, demo_cache, tmp_path, probe) -> None:
    from clinfuse.platform.cache import FeatureCache

    cache = tmp_path / "cache"
    shutil.copytree(demo_cache, cache)
    # The previous cache claims another cohort, so that the ingest rebuilds every modality (DICOM decoding and
    # all) rather than reusing them.
    manifest = json.loads((cache / "manifest.json").read_text())
    manifest["fingerprints"]["cohort"] = "0" * 64
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=1))
    before = probe.snapshot(cache)
    args = ["ingest", "--config", str(demo_cohort / "cohort.yaml"), "--out", str(cache), "--workers", "1"]
    for ready, settle in ((_staged(cache), 2.0), (_staged(cache, "modalities/genomics"), 0.0)):
        _kill_when(args, ready, settle)
        assert probe.snapshot(cache) == before
        assert _leftovers(cache)
    _ok(args)
    assert _leftovers(cache) == []
    assert _cache_files(cache, probe) == _cache_files(demo_cache, probe)
    assert FeatureCache(cache).manifest["fingerprints"] == FeatureCache(demo_cache).manifest["fingerprints"]


def test_score_killed_between_chunks_resumes_to_the_same_scores(nki_model, nki_cohort, nki_scores, tmp_path) -> None:
    out = tmp_path / "scores.parquet"
    args = ["score", "--model", nki_model, "--config", str(nki_cohort), "--out", str(out), "--chunk-size", "10"]
    work = out.with_suffix(".work")
    # once the scoring cache is written (job.json), then between chunks
    for ready in (lambda: (work / "job.json").exists(), lambda: len(list(work.glob("chunks/chunk-*"))) >= 2):
        _kill_when(args, ready)
        assert not out.exists()
    assert "resumed" in _ok(args)
    scored, reference = pd.read_parquet(out), pd.read_parquet(nki_scores)
    pd.testing.assert_frame_equal(scored.drop(columns=["scored_at"]), reference.drop(columns=["scored_at"]))


def test_register_killed_at_any_point_leaves_no_unverifiable_version(nki_run, tmp_path, probe) -> None:
    home = tmp_path / "home"
    env = {"CLINFUSE_HOME": str(home)}
    args = ["models", "register", str(nki_run), "--name", "killed", "--alias", "production"]
    artifacts = home / "mlartifacts"
    # while MLflow creates its database (a half-migrated one used to break every later command), while it
    # records the run, while it stores the bundle
    for ready, settle in ((lambda: any(home.glob(".mlflow.db.partial-*")), 0.0),
                          (lambda: (home / "mlflow.db").exists(), 0.5),
                          (lambda: any(artifacts.rglob("MANIFEST.json")), 0.0)):  # fmt: skip
        _kill_when(args, ready, settle, env=env)
        listing = _ok(["models", "list"], env=env)
        for line in listing.splitlines():  # every version that exists resolves to a verified bundle
            if line.strip().startswith("version "):
                version = line.split()[1].rstrip(":")
                _ok(["models", "show", f"killed:{version}"], env=env)
    _ok(args, env=env)
    shown = json.dumps(_ok(["models", "show", "models:/killed@production"], env=env))
    assert "killed version" in shown
