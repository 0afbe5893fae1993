"""Online scoring latency on CPU: `mlflow models serve` of a registered model, cold start and warm requests.

What one run measures (every figure printed is measured in that run):
  cold start  - server process start -> first GET /ping 200 (MLflow CLI, model download, bundle verification,
                weights loaded and warmed), and -> the first POST /invocations answer;
  warm, HTTP  - N POSTs of a 1-patient request and N/5 POSTs of a 10-patient request, one at a time: p50/p95/max
                per request and p50/p95 per patient (JSON encoding and decoding on the client included);
  in process  - the same requests through `mlflow.pyfunc.load_model(REF).predict` (a DataFrame built beforehand),
                alternating with the HTTP ones so both see the same machine load: the paired difference is the
                HTTP server's share;
  agreement   - the served risks of the 10 patients against the in-process ones (must agree to 1e-6);
  profile     - cProfile of one warm in-process 1-patient predict: the ClinFuse functions that dominate it.

Without --model/--config it builds its own world in a temporary folder with its own CLINFUSE_HOME, through the
`clinfuse` executable: demo-data (200 patients), ingest, train (3 epochs, --split), evaluate, models register
--alias production (a few minutes on a laptop). With --model/--config it serves an existing registered model, e.g.
after `make demo`: --model models:/clinfuse-demo@production --config data/demo/cohort/cohort.yaml
(MLFLOW_TRACKING_URI from the environment, else ClinFuse's registry under CLINFUSE_HOME).

    .venv/bin/python tests/benchmarks/serving_latency_benchmark.py [--requests 50] [--model REF --config YAML]
        [--keep]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from profile_hotspots import clinfuse_hotspots  # this folder is on sys.path when the script runs

VENV_BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 300
BENCH_MODEL = "serving-bench"
PATIENTS = 10


# -- the world ------------------------------------------------------------------------------------------------
def _clinfuse(args: list[str], log: Path, env: dict[str, str]) -> None:
    started = time.perf_counter()
    print(f"  clinfuse {' '.join(args[:2])} ...", end="", flush=True)
    with log.open("ab") as sink:
        done = subprocess.run([str(VENV_BIN / "clinfuse"), *args], env=env, stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"\n`clinfuse {' '.join(args)}` failed ({done.returncode}); its output:\n{log.read_text()[-3000:]}")
    print(f" {time.perf_counter() - started:.0f} s", flush=True)


def build_world(work: Path, env: dict[str, str]) -> tuple[str, Path]:
    """A 200-patient demo cohort and a registered model trained on it, all under `work`."""
    log = work / "build.log"
    cohort = work / "cohort"
    print(f"building a 200-patient demo world in {work} (log: {log.name})", flush=True)
    _clinfuse(["demo-data", "--out", str(cohort), "--patients", "200", "--seed", "7"], log, env)
    _clinfuse(["ingest", "--config", str(cohort / "cohort.yaml"), "--out", str(work / "cache")], log, env)
    _clinfuse(["train", "--cache", str(work / "cache"), "--out", str(work / "run"), "--max-epochs", "3", "--split",
               "--accelerator", "cpu"], log, env)  # fmt: skip
    _clinfuse(["evaluate", str(work / "run"), "--resamples", "200"], log, env)
    _clinfuse(["models", "register", str(work / "run"), "--name", BENCH_MODEL, "--alias", "production"], log, env)
    return f"models:/{BENCH_MODEL}@production", cohort / "cohort.yaml"


def build_requests(model: str, config: Path) -> dict:
    """The request body for the first PATIENTS patients of the cohort table (read from the site's sources)."""
    from clinfuse.pipelines.registry.store import ModelRegistry
    from clinfuse.pipelines.scoring.frozen_ingest import scoring_config
    from clinfuse.pipelines.serving.example import example_request
    from clinfuse.platform.ingest.table_source import read_source_table

    bundle = ModelRegistry().resolve(model).path
    table = scoring_config(config, bundle).cohort
    ids = read_source_table(table.path, table.patient_id, "the cohort table")[table.patient_id].astype(str)
    return example_request(config, bundle, ids.tolist()[:PATIENTS])


# -- the server -----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path
    started: float

    @classmethod
    def start(cls, model: str, env: dict[str, str], log: Path) -> Server:
        port = _free_port()
        command = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", model, "-h", "127.0.0.1", "-p", str(port),
                   "--env-manager", "local"]  # fmt: skip
        started = time.perf_counter()
        with log.open("wb") as sink:
            process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        return cls(process, f"http://127.0.0.1:{port}", log, started)

    def wait_ready(self) -> float:
        """Seconds from process start to the first GET /ping 200."""
        while time.perf_counter() - self.started < READY_TIMEOUT_S:
            if self.process.poll() is not None:
                sys.exit(f"mlflow models serve exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=5) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - self.started
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        sys.exit(f"mlflow models serve not ready after {READY_TIMEOUT_S} s:\n{self.log.read_text()[-3000:]}")

    def invoke(self, body: bytes) -> list[dict]:
        request = urllib.request.Request(f"{self.url}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as answer:
            return json.loads(answer.read())["predictions"]

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# -- measuring ------------------------------------------------------------------------------------------------
def _timed(call) -> float:
    """Milliseconds of one call."""
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _paired(first, second, repeats: int) -> tuple[list[float], list[float]]:
    """Milliseconds of `repeats` calls of each, alternating which goes first: both see the same machine load."""
    times: tuple[list[float], list[float]] = ([], [])
    for repeat in range(repeats):
        order = (0, 1) if repeat % 2 == 0 else (1, 0)
        for which in order:
            times[which].append(_timed((first, second)[which]))
    return times


def _row(label: str, times: list[float], patients: int) -> str:
    p50, p95 = np.percentile(times, 50), np.percentile(times, 95)
    return (f"{label:<26} {len(times):>4} {p50:9.1f} {p95:9.1f} {max(times):9.1f} {p50 / patients:11.1f} "
            f"{p95 / patients:11.1f}")  # fmt: skip


def _profile(model, frame) -> list[str]:
    """The 8 ClinFuse functions with the most cumulative time in one warm predict of `frame`, leaving out wrappers
    (a function spending 90% of its time in one ClinFuse callee): where the time goes, not the call chain."""
    import clinfuse.platform.errors

    root = str(Path(clinfuse.platform.errors.__file__).resolve().parents[1])
    profile = cProfile.Profile()
    profile.enable()
    model.predict(frame)
    profile.disable()
    stats = pstats.Stats(profile)
    kept = clinfuse_hotspots(stats, root)
    total = max(entry[3] for entry in stats.stats.values())
    lines = [f"profile of one warm in-process 1-patient predict ({total * 1000:.0f} ms under cProfile); "
             "top 8 ClinFuse functions by cumulative time, wrappers left out:"]  # fmt: skip
    for (file, line, function), (_, calls, own, cumulative, _) in kept[:8]:
        lines.append(f"  {cumulative * 1000:8.1f} ms cumulative {own * 1000:7.1f} ms own {calls:>5} calls  "
                     f"{function}  ({Path(file).relative_to(root)}:{line})")  # fmt: skip
    return lines


def benchmark(model: str, config: Path, work: Path, env: dict[str, str], repeats: int) -> None:
    import mlflow
    import pandas as pd

    print("building the requests (the site's sources are read once) ...", flush=True)
    records = build_requests(model, config)["dataframe_records"]
    one, ten = {"dataframe_records": records[:1]}, {"dataframe_records": records}
    one_body, ten_body = json.dumps(one).encode(), json.dumps(ten).encode()
    many = max(1, repeats // 5)

    print("starting mlflow models serve ...", flush=True)
    server = Server.start(model, env, work / "server.log")
    try:
        ready_s = server.wait_ready()
        first_ms = _timed(lambda: server.invoke(one_body))
        first_answer_s = time.perf_counter() - server.started
        print("loading the model in this process ...", flush=True)
        started = time.perf_counter()
        loaded = mlflow.pyfunc.load_model(model)
        load_s = time.perf_counter() - started
        one_frame, ten_frame = pd.DataFrame(one["dataframe_records"]), pd.DataFrame(ten["dataframe_records"])
        local_first_ms = _timed(lambda: loaded.predict(one_frame))
        print(f"timing {repeats} + {many} warm requests, HTTP and in process alternately ...", flush=True)
        http_one, local_one = _paired(lambda: server.invoke(one_body), lambda: loaded.predict(one_frame), repeats)
        http_ten, local_ten = _paired(lambda: server.invoke(ten_body), lambda: loaded.predict(ten_frame), many)
        served = pd.DataFrame(server.invoke(ten_body))
    finally:
        server.stop()
    local = loaded.predict(ten_frame)
    profile = _profile(loaded, one_frame)

    scored = served["error"] == ""
    difference = np.nanmax(np.abs(served["risk"].to_numpy(float) - local["risk"].to_numpy(float)))
    agree = (served["patient_id"].tolist() == local["patient_id"].tolist()) and difference <= 1e-6
    cpus, usable = os.cpu_count(), len(os.sched_getaffinity(0))
    version = served["model_version"].iloc[0]
    print(f"\nonline scoring latency, {model} (version {version}), mlflow {mlflow.__version__}")
    print(f"run at {pd.Timestamp.now(tz='UTC').isoformat(timespec='seconds')} on {cpus} CPU cores "
          f"({usable} usable by this process), CPU only")  # fmt: skip
    print(f"cold start: process start -> first /ping 200        {ready_s:8.1f} s")
    print(f"cold start: process start -> first answer (1 pt)    {first_answer_s:8.1f} s "
          f"(the first request itself: {first_ms:.0f} ms)")  # fmt: skip
    print(f"in process: mlflow.pyfunc.load_model                {load_s:8.1f} s "
          f"(first predict: {local_first_ms:.0f} ms)")  # fmt: skip
    print(f"\n{'warm, one request at a time':<26} {'n':>4} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9} "
          f"{'p50 ms/pt':>11} {'p95 ms/pt':>11}")  # fmt: skip
    print(_row("HTTP, 1 patient", http_one, 1))
    print(_row(f"HTTP, {len(records)} patients", http_ten, len(records)))
    print(_row("in process, 1 patient", local_one, 1))
    print(_row(f"in process, {len(records)} patients", local_ten, len(records)))
    overhead = np.median(np.subtract(http_one, local_one))
    print(f"HTTP server's share of a 1-patient request (median of paired differences): {overhead:.1f} ms")
    print(f"\nserved vs in-process risk, {int(scored.sum())}/{len(served)} patients scored: max |difference| "
          f"{difference:.2e} -> {'agree' if agree else 'DISAGREE'} to 1e-6")  # fmt: skip
    print("\n" + "\n".join(profile))
    if not agree:
        sys.exit("the served risks differ from the in-process ones")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="registered model reference, e.g. models:/clinfuse-demo@production")
    parser.add_argument("--config", type=Path, help="cohort.yaml of the site whose patients are sent")
    parser.add_argument("--requests", type=int, default=50, help="warm 1-patient requests (10-patient: a fifth)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (world, server log)")
    args = parser.parse_args()
    if bool(args.model) != bool(args.config):
        parser.error("--model and --config go together")
    work = Path(tempfile.mkdtemp(prefix="clinfuse-serving-bench-"))
    try:
        env = os.environ | {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # mlflow runs uvicorn
        if args.model:
            model, config = args.model, args.config.resolve()
        else:
            env["CLINFUSE_HOME"] = os.environ["CLINFUSE_HOME"] = str(work / "home")
            env.pop("MLFLOW_TRACKING_URI", None)
            os.environ.pop("MLFLOW_TRACKING_URI", None)
            model, config = build_world(work, env)
        from clinfuse.pipelines.registry.store import ModelRegistry

        env["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"] = ModelRegistry().tracking_uri
        benchmark(model, config, work, env, args.requests)
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            print(f"\nremoved {work}")


if __name__ == "__main__":
    main()
