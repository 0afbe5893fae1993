"""Batch scoring: frozen ingest, exact agreement with training, explanations, bad data, kill -9 and resume."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clinfuse.pipelines.scoring.job import score
from clinfuse.pipelines.scoring.results import ScoreResults

MODALITIES = ["imaging", "genomics", "ehr"]


def test_scores_reproduce_training_predictions(demo_scores: Path, demo_run: Path) -> None:
    """The scoring cohort is ingested with the model's frozen alignment, so the same patients get the same
    risks as at training time: nothing was refitted."""
    results = ScoreResults.open(demo_scores)
    table = results.table.set_index("patient_id")
    trained = pd.read_parquet(demo_run / "predictions.parquet").set_index("patient")
    assert len(table) == len(trained) == 300
    assert (table["error"] == "").all() and (table["warnings"] == "").all()
    np.testing.assert_allclose(table.loc[trained.index, "risk"], trained["fusion_prob"], atol=1e-6)
    np.testing.assert_allclose(table.loc[trained.index, "risk_xgboost"], trained["xgboost_prob"], atol=1e-6)
    assert ((table["risk_lower"] <= table["risk"]) & (table["risk"] <= table["risk_upper"])).all()
    assert (table["risk_upper"] - table["risk_lower"]).gt(0).all()
    assert (table["model_name"] == "demo").all() and (table["model_version"] == 1).all()
    assert table["scored_at"].nunique() == 1
    assert results.modalities == {"imaging": "dicom", "genomics": "table", "ehr": "ehr"}
    assert results.aliases == ["production"]


def test_contributions_are_exact_and_absent_modalities_have_none(demo_scores: Path, demo_run: Path) -> None:
    table = ScoreResults.open(demo_scores).table
    trained = pd.read_parquet(demo_run / "predictions.parquet").set_index("patient").loc[table["patient_id"]]
    total = table["contribution_base"].to_numpy().copy()
    for name in MODALITIES:
        present = trained[f"present_{name}"].to_numpy()
        values = table[f"contribution_{name}"].to_numpy()
        assert np.isnan(values[~present]).all() and not np.isnan(values[present]).any()
        assert set(table.loc[present, "modalities_present"].str.split("+").explode()) >= {name}
        total += np.nan_to_num(values)
    np.testing.assert_allclose(total, table["risk"], atol=1e-6)


def test_a_running_cluster_scores_the_same_as_this_process(
    demo_scores: Path, demo_cohort: Path, registered_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--scheduler`: the chunks run on the cluster at once, every one of them (a LocalCluster of threads on
    loopback, reached by its address), and the risks equal the in-process scores of the same model."""
    import torch
    from clinfuse.pipelines.scoring import job
    from dask.distributed import LocalCluster, get_worker

    on_worker: list[bool] = []

    def recorded(task):
        try:
            on_worker.append(get_worker() is not None)
        except ValueError:  # not on a Dask worker
            on_worker.append(False)
        return score_chunk(task)

    score_chunk = job.score_chunk
    monkeypatch.setattr(job, "score_chunk", recorded)
    chunk_size = ScoreResults.open(demo_scores).metadata["chunk_size"]
    threads = torch.get_num_threads()  # the workers set one torch thread in the process they run in: this one
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                          dashboard_address=None) as cluster:  # fmt: skip
            out = tmp_path / "scores.parquet"
            score(registered_model, demo_cohort / "cohort.yaml", out, scheduler=cluster.scheduler_address,
                  chunk_size=chunk_size)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert on_worker == [True] * -(-300 // chunk_size), on_worker
    ours = ScoreResults.open(out).table.set_index("patient_id")
    reference = ScoreResults.open(demo_scores).table.set_index("patient_id").loc[ours.index]
    np.testing.assert_allclose(ours["risk"], reference["risk"], atol=1e-6)
    np.testing.assert_allclose(ours["risk_xgboost"], reference["risk_xgboost"], atol=1e-6)


def test_a_failed_chunk_fails_alone_and_a_rerun_scores_only_it(
    demo_scores: Path, demo_cohort: Path, registered_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk whose scoring raises is one error naming the fix; the other chunks are saved, and the rerun the error
    asks for scores that chunk alone and gives the uninterrupted run's scores."""
    from clinfuse.pipelines.scoring import job
    from clinfuse.platform.errors import ClinFuseError

    chunk_size = ScoreResults.open(demo_scores).metadata["chunk_size"]
    score_chunk, scored = job.score_chunk, []

    def second_chunk_breaks(task):
        scored.append(task.rows[0])
        if task.rows[0] == chunk_size:
            raise RuntimeError("disk gone")
        return score_chunk(task)

    monkeypatch.setattr(job, "score_chunk", second_chunk_breaks)
    out = tmp_path / "scores.parquet"
    with pytest.raises(ClinFuseError, match=rf"1 chunk\(s\) of \d+ failed \(chunk at row {chunk_size}: "
                                             r"RuntimeError: disk gone\).*rerun the same command"):  # fmt: skip
        score(registered_model, demo_cohort / "cohort.yaml", out, chunk_size=chunk_size)
    assert not out.exists()
    starts = list(range(0, 300, chunk_size))
    assert scored == starts
    saved = sorted(p.name for p in (tmp_path / "scores.work" / "chunks").glob("chunk-*.parquet"))
    assert saved == [f"chunk-{s:06d}.parquet" for s in starts if s != chunk_size]

    scored.clear()
    monkeypatch.setattr(job, "score_chunk", lambda task: scored.append(task.rows[0]) or score_chunk(task))
    score(registered_model, demo_cohort / "cohort.yaml", out, chunk_size=chunk_size)
    assert scored == [chunk_size]
    ours = ScoreResults.open(out).table.set_index("patient_id")
    reference = ScoreResults.open(demo_scores).table.set_index("patient_id").loc[ours.index]
    np.testing.assert_allclose(ours["risk"], reference["risk"], atol=1e-6)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - len(data) // 3])  # header intact, pixel data cut short


def test_bad_patients_are_flagged_or_get_error_rows_and_the_run_goes_on(
    demo_cohort_copy: Path, demo_truth: dict, registered_model: str, tmp_path: Path
) -> None:
    manifest = pd.read_csv(demo_cohort_copy / "imaging_manifest.csv", dtype={"patient_id": str})
    patients = demo_truth["patients"]
    only_imaging = next(p for p, t in patients.items() if [m for m, v in t["present"].items() if v] == ["imaging"])
    mixed = next(p for p, t in patients.items() if t["present"]["imaging"] and t["present"]["ehr"])
    for patient in (only_imaging, mixed):
        for relative in manifest.loc[manifest["patient_id"] == patient, "path"]:
            _truncate(demo_cohort_copy / relative)

    out = tmp_path / "scores.parquet"
    summary = score(registered_model, demo_cohort_copy / "cohort.yaml", out, explain=True, workers=1, chunk_size=150)
    table = ScoreResults.open(out).table
    cohort = pd.read_csv(demo_cohort_copy / "cohort.csv", dtype={"patient_id": str})
    assert summary.patients == len(table) == len(cohort) and summary.errors == 1

    from clinfuse.platform.security import Pseudonymiser, load_pseudonym_key

    pseudonym = Pseudonymiser(load_pseudonym_key())
    dead = table.set_index("patient_id").loc[pseudonym(only_imaging)]
    unreadable = r"imaging: (truncated file|pixel decoding failed)"  # header pass or decoder, by transfer syntax
    assert re.match(rf"no usable modality \({unreadable}", dead["error"]), dead["error"]
    assert np.isnan(dead["risk"]) and dead["modalities_present"] == ""
    flagged = table.set_index("patient_id").loc[pseudonym(mixed)]
    assert flagged["error"] == "" and re.match(unreadable, flagged["warnings"]), flagged["warnings"]
    assert "imaging" not in flagged["modalities_present"] and 0 < flagged["risk"] < 1
    assert np.isnan(flagged["contribution_imaging"])
    assert (table.drop(index=table.index[table["patient_id"].isin([pseudonym(only_imaging)])])["error"] == "").all()


def test_killed_run_resumes_to_the_same_file(
    demo_scores: Path, demo_cohort: Path, registered_model: str, clinfuse_exe: Path, tmp_path: Path
) -> None:
    chunk_size = ScoreResults.open(demo_scores).metadata["chunk_size"]  # the same chunks as the reference run
    out = tmp_path / "resumed.parquet"
    command = [str(clinfuse_exe), "score", "--model", registered_model, "--config", str(demo_cohort / "cohort.yaml"),
               "--out", str(out), "--explain", "--workers", "1", "--chunk-size", str(chunk_size)]  # fmt: skip
    chunks = out.with_suffix(".work") / "chunks"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(chunks.glob("chunk-*.parquet"))) < 2:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        time.sleep(0.05)  # one worker scores in the client process: a chunk takes well under a second
    os.killpg(process.pid, signal.SIGKILL)  # the client (and any Dask workers), as a crash or OOM kill would
    process.wait()
    finished = len(list(chunks.glob("chunk-*.parquet")))
    assert 2 <= finished < -(-300 // chunk_size) and not out.exists()

    rerun = subprocess.run(command, capture_output=True, text=True, check=True)
    assert f"({finished} finished chunk(s) resumed)" in rerun.stdout
    resumed = ScoreResults.open(out).table
    uninterrupted = ScoreResults.open(demo_scores).table
    # identical apart from the job's start time
    pd.testing.assert_frame_equal(resumed.drop(columns="scored_at"), uninterrupted.drop(columns="scored_at"))
    assert not chunks.exists()


def test_scoring_refuses_a_config_without_the_models_modalities(
    demo_cohort_copy: Path, registered_model: str, tmp_path: Path
) -> None:
    import yaml
    from clinfuse.platform.errors import ClinFuseError

    config = yaml.safe_load((demo_cohort_copy / "cohort.yaml").read_text())
    config["modalities"] = [m for m in config["modalities"] if m["name"] != "genomics"]
    (demo_cohort_copy / "cohort.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ClinFuseError, match="no modality 'genomics'"):
        score(registered_model, demo_cohort_copy / "cohort.yaml", tmp_path / "s.parquet")


def test_explainer_over_scores_agrees_with_the_scores(demo_scores: Path) -> None:
    """The dashboard's on-demand explanation (bundle + scoring cache) gives the scored risks, for both models:
    TreeSHAP must use the same (early-stopped) trees as the baseline's prediction."""
    results = ScoreResults.open(demo_scores)
    explainer = results.explainer(top_k=5)
    for _, row in results.table.sort_values("risk", ascending=False).head(3).iterrows():
        explanation = explainer.explain(row["patient_id"], store_heatmaps=False)
        assert explanation.risk == pytest.approx(row["risk"], abs=1e-6)
        assert explanation.xgboost["probability"] == pytest.approx(row["risk_xgboost"], abs=1e-5)
        shapley = explanation.modality
        assert shapley.probability_base == pytest.approx(row["contribution_base"], abs=1e-6)
