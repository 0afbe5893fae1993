"""Every command line in the Dockerfiles, compose, the Kubernetes manifests and the runbook is checked against the
real command-line interface it calls: `clinfuse` (its typer/click tree), `dask scheduler|worker` (distributed's
click commands), `mlflow models ...` (MLflow's click commands) and `mlflow server` (the options MLflow's CLI
declares). One test per command line: an unknown command or option, a missing value, a value of the wrong type, too
many arguments or (outside prose) a missing required option fails the test that names it."""

from __future__ import annotations

import re

import pytest


def test_command_lines_are_readable(deploy) -> None:
    collected = deploy.collected()
    assert collected.error is None, f"reading the command lines failed: {collected.error!r}"
    sources = {inv.source.split(":")[0] for inv in collected.invocations}
    for expected in ("deploy/gpu.Dockerfile", "deploy/dashboard.Dockerfile", "compose", "README.md",
                     "score-cronjob.yaml", "train-job.yaml", "dashboard.yaml", "dask.yaml", "mlflow.yaml",
                     "serving.yaml"):  # fmt: skip
        assert expected in sources, f"no command line found in {expected}: the reader is broken"
    programs = {inv.program for inv in collected.invocations}
    assert programs == {"clinfuse", "dask", "mlflow"}


def test_clinfuse_command_line(clinfuse_invocation, clinfuse_cli, deploy) -> None:
    problems = deploy.check_click_argv(
        clinfuse_cli, "clinfuse", list(clinfuse_invocation.argv), clinfuse_invocation.complete
    )
    assert not problems, f"{clinfuse_invocation.source}: " + "; ".join(problems)


def test_dask_command_line(dask_invocation, dask_cli, deploy) -> None:
    if dask_invocation.argv == ("--version",):
        return  # the build's smoke test; dask's own group has --version
    assert dask_invocation.argv[:1] in (("scheduler",), ("worker",)), dask_invocation
    problems = deploy.check_click_argv(dask_cli, "dask", list(dask_invocation.argv), dask_invocation.complete)
    assert not problems, f"{dask_invocation.source}: " + "; ".join(problems)


def test_mlflow_command_line(mlflow_invocation, mlflow_cli_source, mlflow_models_cli, deploy) -> None:
    argv = list(mlflow_invocation.argv)
    assert argv[:1] in (["server"], ["models"]), f"{mlflow_invocation.source}: only `mlflow server|models` expected"
    if argv[0] == "models":
        problems = deploy.check_click_argv(mlflow_models_cli, "mlflow", argv, mlflow_invocation.complete)
        assert not problems, f"{mlflow_invocation.source}: " + "; ".join(problems)
        return
    for token in argv[1:]:
        if token.startswith("--"):
            name = token.split("=")[0]
            assert re.search(rf"[\"']{re.escape(name)}[\"'/]", mlflow_cli_source), (
                f"{mlflow_invocation.source}: the installed MLflow declares no option {name}"
            )


def test_the_deployment_uses_the_commands_it_needs(deploy) -> None:
    """The subcommands the deployment relies on appear somewhere (their lines are checked above)."""
    used, mlflow = set(), set()
    for inv in deploy.collected().invocations:
        words = [w for w in inv.argv if not w.startswith("-")]
        if inv.program == "clinfuse" and words:
            used.add(tuple(words[:2]) if words[0] in ("models", "users") else (words[0],))
        if inv.program == "mlflow" and words:
            mlflow.add(tuple(words[:2]) if words[0] == "models" else (words[0],))
    expected = {("ingest",), ("train",), ("evaluate",), ("score",), ("dashboard",), ("models", "register"),
                ("models", "list"), ("models", "show"), ("models", "promote"), ("models", "rollback"),
                ("users", "add")}  # fmt: skip
    assert expected <= used, f"never used: {sorted(expected - used)}"
    wanted = {("server",), ("models", "serve"), ("models", "build-docker"), ("models", "generate-dockerfile")}
    assert wanted <= mlflow, f"never used: {sorted(wanted - mlflow)}"


def test_servers_expose_the_probed_health_endpoints(deploy) -> None:
    import importlib.util
    from pathlib import Path

    from distributed.http.health import routes

    assert "/health" in {route[0] for route in routes}, "the Dask probes use /health"
    streamlit = Path(importlib.util.find_spec("streamlit").submodule_search_locations[0])
    server_sources = " ".join(p.read_text() for p in (streamlit / "web" / "server").rglob("*.py"))
    assert "_stcore/health" in server_sources, "Streamlit no longer serves /_stcore/health"
    mlflow = Path(importlib.util.find_spec("mlflow").submodule_search_locations[0])
    assert re.search(r"[\"']/health[\"']", (mlflow / "server" / "__init__.py").read_text())
    scoring = (mlflow / "pyfunc" / "scoring_server" / "__init__.py").read_text()
    assert re.search(r"app\.get\([\"']/ping[\"']\)", scoring), (
        "the online scoring probes use the scoring server's /ping"
    )


# ---------------------------------------------------------------------------------------------------------------
# the checker and the reader fail when they should


@pytest.mark.parametrize(
    ("argv", "complete", "problem"),
    [
        (["trian", "--cache", "c"], True, "has no command 'trian'"),
        (["train", "--cache", "c", "--out", "r", "--epochs", "3"], True, "has no option --epochs"),
        (["train", "--cache", "c"], True, "needs --out"),
        (["train", "--cache", "c"], False, None),
        (["ingest", "--config", "a", "--out", "b", "--workers", "many"], True, "--workers many`: Invalid value"),
        (["ingest", "--config", "a", "--out", "b", "--workers"], True, "needs a value"),
        (["evaluate", "run1", "run2"], True, "takes 1 argument(s), given 2"),
        (["evaluate"], True, "needs 1 argument(s)"),
        (["explain", "--run", "r", "--patient", "p", "--json=yes"], True, "is a flag"),
        (["train", "--help"], True, None),
        (["models", "promote", "clinfuse-risk", "3", "--alias", "production"], True, None),
        (["models", "promote", "clinfuse-risk", "three"], True, "argument VERSION three"),
        (["models", "promote", "clinfuse-risk", "0"], True, "argument VERSION 0"),
        (["score", "--model", "m", "--config", "c", "--out", "o", "--workers", "0"], True, "--workers 0"),
        (["--help"], True, None),
    ],
)
def test_checker_finds_mistakes(argv, complete, problem, clinfuse_cli, deploy) -> None:
    problems = deploy.check_click_argv(clinfuse_cli, "clinfuse", argv, complete)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["models", "serve", "-m", "models:/m@production", "--env-manager", "local", "-h", "0.0.0.0"], None),
        (["models", "serve", "--env-manager", "local"], "needs --model-uri"),
        (["models", "serve", "-m", "m", "--timeout", "soon"], "--timeout soon`: Invalid value"),
        (["models", "serve", "-m", "m", "--env-manager", "pip"], "--env-manager pip`"),
        (["models", "build-docker", "-m", "m", "--base-image", "python:3.12-slim"], "has no option --base-image"),
        (["models", "generate-dockerfile", "-m", "m", "-d", "out", "--env-manager", "local"], None),
        (["models", "deploy", "-m", "m"], "has no command 'deploy'"),
    ],
)
def test_mlflow_checker_finds_mistakes(argv, problem, mlflow_models_cli, deploy) -> None:
    """MLflow's own commands, as the runbook relies on them: build-docker takes no base image (only the Python API
    does), the timeout is a number of seconds, --env-manager is one of MLflow's managers."""
    problems = deploy.check_click_argv(mlflow_models_cli, "mlflow", argv, True)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("kubectl -n clinfuse exec deploy/clinfuse-dask-worker -- clinfuse models list", [("models", "list")]),
        ("cd /opt/clinfuse && clinfuse evaluate /data/runs/r1 2>&1 | tee log", [("evaluate", "/data/runs/r1")]),
        ('run="/data/runs/x"; clinfuse train --out "$run" --cache c >/dev/null', [("train", "--out", "$run",
                                                                                    "--cache", "c")]),
        ("docker compose -f deploy/docker-compose.yml run --rm cli clinfuse models list", [("models", "list")]),
        ("docker run --rm clinfuse/dashboard:0.1.0 clinfuse users list", [("users", "list")]),
        ("CLINFUSE_HOME=/tmp/h clinfuse --help", [("--help",)]),
        ("kubectl -n clinfuse get pods", []),
        ("echo clinfuse is great  # clinfuse train", []),
    ],
)  # fmt: skip
def test_reader_finds_invocations(line: str, expected, deploy) -> None:
    found = [
        inv.argv
        for argv in deploy.shell_commands(line)
        for inv in deploy.invocations_in(argv, "t", True, frozenset({"cli"}))
    ]
    assert found == expected
