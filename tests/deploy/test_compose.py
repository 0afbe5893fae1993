"""deploy/docker-compose.yml: valid against the Compose Specification, every reference resolves (services, images,
volumes, secrets, variables), services run hardened, and the services agree with each other on addresses, paths and
ports. (The command lines are checked against the real CLIs in test_cli_references.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

OUR_IMAGE = re.compile(r"^(?:[\w.-]+(?::\d+)?/)?clinfuse/([\w.-]+):([\w.-]+)$")
PUBLIC_PINNED = re.compile(r"^[\w.-]+\.[a-z]+/[\w./-]+:v?\d+\.\d+\.\d+$")
JOBS = ("train", "score")


@pytest.fixture(scope="module")
def compose(deploy) -> dict:
    document = deploy.load_compose()
    assert document.get("services"), "deploy/docker-compose.yml has no services"
    return document


def _service(compose: dict, name: str) -> dict:
    return compose["services"][name]


def _image(deploy, service: dict) -> str:
    return deploy.interpolate(service.get("image", ""))


def _command(deploy, service: dict) -> list[str]:
    command = service.get("command")
    assert isinstance(command, list), "use the list form for commands"
    return [deploy.interpolate(str(part)) for part in command]


def _option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def _volumes(deploy, service: dict) -> dict[str, tuple[str, bool]]:
    """target -> (source, read_only) of a service's short-syntax volumes, variables at their defaults."""
    mounts = {}
    for entry in service.get("volumes") or []:
        parts = deploy.interpolate(entry).split(":")
        source, target = parts[0], parts[1]
        mounts[target] = (source, len(parts) > 2 and "ro" in parts[2].split(","))
    return mounts


def _our_images(compose: dict, deploy) -> dict[str, str]:
    return {name: _image(deploy, s) for name, s in compose["services"].items() if OUR_IMAGE.match(_image(deploy, s))}


def test_compose_file_matches_the_compose_specification(deploy) -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(deploy.COMPOSE_FILE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_expected_services(compose: dict) -> None:
    assert {"mlflow", "dask-scheduler", "dask-worker", "dashboard", "score", "train", "serving"} <= set(
        compose["services"]
    )


def test_service_dependencies_exist_and_are_waited_on_properly(compose_service: str, compose: dict, deploy) -> None:
    service = _service(compose, compose_service)
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        depends = {name: {"condition": "service_started"} for name in depends}
    for target, rule in depends.items():
        assert target in compose["services"], f"{compose_service} depends on unknown service {target}"
        assert target != compose_service
        if rule.get("condition") == "service_healthy":
            other = _service(compose, target)
            image = _image(deploy, other)
            own = OUR_IMAGE.match(image)
            has_image_check = bool(own) and bool(
                deploy.parse_dockerfile(deploy.DEPLOY / f"{own.group(1)}.Dockerfile").all("HEALTHCHECK")
            )
            assert "healthcheck" in other or has_image_check, f"{target} has no healthcheck to wait for"


def test_images_are_built_here_or_pinned_public_images(compose_service: str, compose: dict, deploy) -> None:
    service = _service(compose, compose_service)
    image = _image(deploy, service)
    assert image, f"{compose_service} names no image"
    ours = OUR_IMAGE.match(image)
    if ours:
        dockerfile = deploy.DEPLOY / f"{ours.group(1)}.Dockerfile"
        assert dockerfile.is_file(), f"{image} is built from no Dockerfile in deploy/"
        assert ours.group(2) == deploy.pyproject()["project"]["version"], f"{image}: tag is not the project version"
        build = service.get("build")
        assert build, f"{compose_service} uses {image} but does not say how to build it"
        context = (deploy.COMPOSE_FILE.parent / build["context"]).resolve()
        assert context == deploy.REPO, "the build context must be the repository root"
        assert (context / build["dockerfile"]).resolve() == dockerfile.resolve()
        args = build.get("args") or {}
        assert deploy.interpolate(str(args.get("VERSION", ""))) == ours.group(2)
    else:
        assert PUBLIC_PINNED.match(image), f"{compose_service}: {image} is neither built here nor pinned"
        assert "build" not in service


def test_mlflow_server_image_matches_the_project_dependency(compose: dict, deploy) -> None:
    image = _image(deploy, _service(compose, "mlflow"))
    assert image.startswith("ghcr.io/mlflow/mlflow:v")
    version = Version(image.rsplit(":v", 1)[1])
    wanted = next(d for d in deploy.pyproject()["project"]["dependencies"] if re.match(r"mlflow\s*[<>=~!]", d))
    assert version in SpecifierSet(wanted[len("mlflow") :]), f"server {version} outside the client's {wanted}"


def test_volumes_and_secrets_are_declared(compose_service: str, compose: dict, deploy) -> None:
    service = _service(compose, compose_service)
    for target, (source, _) in _volumes(deploy, service).items():
        assert target.startswith("/"), f"{compose_service}: volume target {target} must be absolute"
        if source.startswith((".", "/")):
            assert (deploy.COMPOSE_FILE.parent / source).exists(), f"{compose_service} mounts missing {source}"
        else:
            assert source in (compose.get("volumes") or {}), f"{compose_service}: volume {source} is not declared"
    for secret in service.get("secrets") or []:
        name = secret if isinstance(secret, str) else secret["source"]
        assert name in (compose.get("secrets") or {}), f"{compose_service}: secret {name} is not declared"


def test_secret_files_are_git_ignored_and_not_committed(compose: dict, deploy) -> None:
    for name, secret in (compose.get("secrets") or {}).items():
        path = (deploy.COMPOSE_FILE.parent / secret["file"]).resolve()
        assert path.parent == deploy.DEPLOY / "secrets", f"secret {name} must live in deploy/secrets/"
        relative = deploy.relative(path)
        ignored = subprocess.run(["git", "check-ignore", "-q", relative], cwd=deploy.REPO, check=False)
        assert ignored.returncode == 0, f"{relative} is not git-ignored"
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", relative], cwd=deploy.REPO,
                                 capture_output=True, check=False)  # fmt: skip
        assert tracked.returncode != 0, f"{relative} is committed"


def test_our_services_run_hardened_as_the_image_user(compose: dict, deploy) -> None:
    for name, image in _our_images(compose, deploy).items():
        service = _service(compose, name)
        dockerfile = deploy.parse_dockerfile(deploy.DEPLOY / f"{OUR_IMAGE.match(image).group(1)}.Dockerfile")
        assert service.get("user") == dockerfile.in_stage(dockerfile.final_stage, "USER")[-1].value, name
        assert service.get("read_only") is True, f"{name}: read-only root filesystem"
        assert any(str(t).split(":")[0] == "/tmp" for t in service.get("tmpfs") or []), f"{name}: no /tmp tmpfs"
        assert (service.get("environment") or {}).get("HOME", "").startswith("/tmp"), f"{name}: HOME is read-only"
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in (service.get("security_opt") or []), name
        assert not service.get("privileged"), name
        assert "entrypoint" not in service, f"{name}: keep the image's tini entrypoint"


def test_no_secret_values_in_the_environment(compose: dict) -> None:
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: use the mapping form for environment"
        assert "CLINFUSE_PSEUDONYM_KEY" not in environment, f"{name}: the key belongs in a secret file"
        for key, value in environment.items():
            if re.search(r"KEY|SECRET|PASSWORD|TOKEN", key) and not key.endswith("_FILE"):
                raise AssertionError(f"{name}: {key}={value} puts a secret into the container's environment")


def test_pseudonym_key_file_is_a_mounted_secret(compose: dict, deploy) -> None:
    users = 0
    for name, service in compose["services"].items():
        path = (service.get("environment") or {}).get("CLINFUSE_PSEUDONYM_KEY_FILE")
        if path is None:
            assert not OUR_IMAGE.match(_image(deploy, service)) or name == "dask-scheduler", f"{name}: no key"
            continue
        users += 1
        secret = path.removeprefix("/run/secrets/")
        assert path.startswith("/run/secrets/") and secret in (service.get("secrets") or []), f"{name}: {path}"
    assert users >= 4


def test_tracking_uri_points_at_the_mlflow_service(compose: dict, deploy) -> None:
    mlflow = _command(deploy, _service(compose, "mlflow"))
    port = _option(mlflow, "--port")
    allowed = _option(mlflow, "--allowed-hosts").split(",")
    for name, service in compose["services"].items():
        uri = (service.get("environment") or {}).get("MLFLOW_TRACKING_URI")
        if uri is None:
            continue
        assert uri == f"http://mlflow:{port}", f"{name}: {uri}"
        assert f"mlflow:{port}" in allowed, "the MLflow server would refuse the Host header its clients send"
    assert _option(mlflow, "--backend-store-uri").startswith("sqlite:////mlflow/")
    assert _option(mlflow, "--artifacts-destination").startswith("/mlflow/")
    assert "--serve-artifacts" in mlflow, "clients download bundles through the server, not from its volume"
    assert _volumes(deploy, _service(compose, "mlflow"))["/mlflow"][0] in compose["volumes"]


def test_dask_addresses_point_at_the_scheduler(compose: dict, deploy) -> None:
    scheduler = _command(deploy, _service(compose, "dask-scheduler"))
    assert _option(scheduler, "--protocol") == "tls", "Dask unpickles what it is sent: mutual TLS only"
    address = f"tls://dask-scheduler:{_option(scheduler, '--port')}"
    worker = _command(deploy, _service(compose, "dask-worker"))
    assert worker[:3] == ["dask", "worker", address]
    assert _option(_command(deploy, _service(compose, "score")), "--scheduler") == address


def test_workers_see_the_scoring_files_at_the_same_paths(compose: dict, deploy) -> None:
    score = _volumes(deploy, _service(compose, "score"))
    worker = _volumes(deploy, _service(compose, "dask-worker"))
    for target in ("/data", "/var/lib/clinfuse"):
        assert score[target][0] == worker[target][0], f"{target}: scoring and workers mount different volumes"
        assert not worker[target][1], f"workers need {target} writable"
    home = (_service(compose, "score").get("environment") or {}).get("CLINFUSE_HOME")
    assert home == "/var/lib/clinfuse" == (_service(compose, "dask-worker").get("environment") or {})["CLINFUSE_HOME"]


def test_dashboard_reads_what_scoring_writes(compose: dict, deploy) -> None:
    dashboard_service = _service(compose, "dashboard")
    dashboard = _command(deploy, dashboard_service)
    scores = _option(dashboard, "--scores")
    assert scores == _option(_command(deploy, _service(compose, "score")), "--out")
    mounts = _volumes(deploy, dashboard_service)
    score_mounts = _volumes(deploy, _service(compose, "score"))
    # the scores name the model bundle (under CLINFUSE_HOME) and the scoring cache (under /data) by absolute path
    for target in ("/data", "/var/lib/clinfuse"):
        assert mounts[target][0] == score_mounts[target][0], f"the dashboard cannot open the scores' {target}"
    port = _option(dashboard, "--port")
    assert _option(dashboard, "--host") == "0.0.0.0"
    published = [deploy.interpolate(p) for p in dashboard_service.get("ports") or []]
    assert published and all(p.startswith("127.0.0.1:") and p.endswith(f":{port}") for p in published)


def test_dashboard_state_is_writable_and_persistent(compose: dict, deploy) -> None:
    service = _service(compose, "dashboard")
    environment = service.get("environment") or {}
    mounts = _volumes(deploy, service)
    for variable in ("CLINFUSE_DASHBOARD_USERS", "CLINFUSE_AUDIT_LOG"):
        folder = str(Path(environment[variable]).parent)
        assert folder in mounts, f"{variable}: {environment[variable]} is not on a volume"
        source, read_only = mounts[folder]
        assert not read_only and source in compose["volumes"], f"{variable} needs a writable named volume"
        assert source not in {v[0] for k, v in _volumes(deploy, _service(compose, "score")).items()}
    settings = environment["CLINFUSE_DASHBOARD_CONFIG"]
    source, read_only = mounts[settings]
    assert read_only and (deploy.COMPOSE_FILE.parent / source).is_file()


def test_online_scoring_serves_what_batch_scoring_scores(compose: dict, deploy) -> None:
    service = _service(compose, "serving")
    argv = _command(deploy, service)
    score_service = _service(compose, "score")
    score = _command(deploy, score_service)
    assert argv[:3] == ["mlflow", "models", "serve"]
    assert _option(argv, "--model-uri") == _option(score, "--model"), "online and batch score one model"
    assert _option(argv, "--env-manager") == "local" and _option(argv, "--host") == "0.0.0.0"
    assert _image(deploy, service) == _image(deploy, _service(compose, "dashboard")), "the CPU image"
    port = _option(argv, "--port")
    published = [deploy.interpolate(p) for p in service.get("ports") or []]
    assert published and all(p.startswith("127.0.0.1:") and p.endswith(f":{port}") for p in published)
    assert f"127.0.0.1:{port}/ping" in " ".join(service["healthcheck"]["test"]), "the scoring server's /ping"
    # the key and settings of batch scoring: the pseudonyms in an answer are batch scoring's
    environment, score_environment = service["environment"], score_service["environment"]
    for name in ("CLINFUSE_PSEUDONYM_KEY_FILE", "CLINFUSE_HOME", "MLFLOW_TRACKING_URI"):
        assert environment[name] == score_environment[name], name
    assert "pseudonym_key" in service["secrets"]
    # DICOM paths of a request: under the cohort folder, on /data mounted read-only; its own CLINFUSE_HOME
    root = environment["CLINFUSE_SERVING_ROOT"]
    assert root == str(Path(_option(score, "--config")).parent)
    mounts = _volumes(deploy, service)
    assert mounts["/data"] == (_volumes(deploy, score_service)["/data"][0], True)
    assert environment["CLINFUSE_HOME"] not in mounts, "it must not write the bundles the jobs share"
    assert any(str(t).split(":")[0] == environment["CLINFUSE_HOME"] for t in service["tmpfs"])
    threads, workers = int(environment["OMP_NUM_THREADS"]), int(environment["MLFLOW_MODELS_WORKERS"])
    assert threads * workers == int(service["deploy"]["resources"]["limits"]["cpus"])
    assert service.get("profiles"), "it cannot start before a version has the production alias"
    assert service["depends_on"]["mlflow"]["condition"] == "service_healthy"


def test_training_reserves_a_gpu_and_shared_memory(compose: dict) -> None:
    train = _service(compose, "train")
    devices = train["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert re.fullmatch(r"\d+[gG][bB]?", str(train.get("shm_size", ""))), "DataLoader workers need /dev/shm"


def test_jobs_run_only_when_asked(compose: dict) -> None:
    for name in (*JOBS, "cli"):
        assert _service(compose, name).get("profiles"), f"`up` would start the one-off {name}"
        assert "restart" not in _service(compose, name)
    # one-off preparations that services wait for (service_completed_successfully) run once per `up`
    preparations = {
        target
        for service in compose["services"].values()
        for target, rule in (service.get("depends_on") or {}).items()
        if isinstance(rule, dict) and rule.get("condition") == "service_completed_successfully"
    }
    for name, service in compose["services"].items():
        if name in preparations:
            assert service.get("restart", "no") == "no", f"{name} would run again after it finished"
        elif not service.get("profiles"):
            assert service.get("restart") == "unless-stopped", f"{name}: long-running services restart"


def test_ports_are_published_on_loopback_only(compose: dict, deploy) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports") or []:
            assert deploy.interpolate(str(port)).startswith("127.0.0.1:"), f"{name} publishes {port} on all addresses"


def test_variables_have_defaults_and_are_documented(deploy) -> None:
    text = deploy.COMPOSE_FILE.read_text()
    used = deploy.compose_variables(text)
    undefaulted = set(re.findall(r"(?<!\$)\$\{(\w+)\}", text))
    assert not undefaulted, f"variables without a default: {sorted(undefaulted)}"
    example = deploy.DEPLOY / ".env.example"
    documented = set(re.findall(r"^([A-Z_]+)=", example.read_text(), flags=re.M))
    assert used == documented, f"used {sorted(used)} vs deploy/.env.example {sorted(documented)}"
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/.env"], cwd=deploy.REPO, check=False)
    assert ignored.returncode == 0, "deploy/.env must be git-ignored"
