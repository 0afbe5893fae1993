"""deploy/README.md, the operator's runbook: it covers the operations the issue names, and everything it tells an
operator to type names things that exist: make targets, files, compose services and volumes, Kubernetes
resources and labels, environment variables, build arguments and their defaults. (Its `clinfuse`, `dask` and
`mlflow` command lines are checked against the real CLIs in test_cli_references.py.)"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

SECTIONS = (
    "Build",
    "Configure",
    "Run",
    "Online scoring",
    "Upgrade a model by alias",
    "Roll back",
    "Where things live",
    "Backup",
)
# Files the runbook tells the operator to create (git-ignored, so they never exist in a checkout).
OPERATOR_FILES = {
    "deploy/.env",
    "deploy/secrets/pseudonym.key",
    "deploy/secrets/dask-ca.pem",
    "deploy/secrets/dask-tls.pem",
}
COMPOSE_VALUE_OPTIONS = {"-f", "--file", "-p", "--project-name", "--profile", "--env-file", "-e", "--env", "-v",
                         "--volume", "-u", "--user", "-w", "--workdir", "--name", "--entrypoint", "--scale",
                         "--publish", "--index", "-n", "--tail"}  # fmt: skip
KUBECTL_KINDS = {"deploy": "Deployment", "deployment": "Deployment", "svc": "Service", "service": "Service",
                 "cronjob": "CronJob", "job": "Job"}  # fmt: skip


@pytest.fixture(scope="module")
def runbook(deploy) -> str:
    assert deploy.RUNBOOK.is_file(), "deploy/README.md is missing"
    return deploy.RUNBOOK.read_text()


@pytest.fixture(scope="module")
def commands(runbook: str, deploy) -> list[list[str]]:
    """Every simple command of the runbook: fenced shell blocks and inline code."""
    found = [argv for _, block in deploy.runbook_blocks(runbook) for argv in deploy.shell_commands(block)]
    for code in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", runbook, flags=re.S)):
        try:
            found += deploy.shell_commands(code)
        except AssertionError:
            continue
    return found


def _compose_parts(argv: list[str]) -> tuple[str, list[str]] | None:
    """(subcommand, its arguments) of a `docker compose ...` command."""
    if argv[:2] != ["docker", "compose"]:
        return None
    i = 2
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in COMPOSE_VALUE_OPTIONS else 1
    return (argv[i], argv[i + 1 :]) if i < len(argv) else None


def _positionals(arguments: list[str]) -> list[str]:
    result, i = [], 0
    while i < len(arguments):
        if arguments[i].startswith("-"):
            i += 2 if arguments[i] in COMPOSE_VALUE_OPTIONS else 1
        else:
            result.append(arguments[i])
            i += 1
    return result


def test_runbook_covers_the_operations(runbook: str) -> None:
    headings = re.findall(r"^#{2,3} (.+)$", runbook, flags=re.M)
    for section in SECTIONS:
        assert section in headings, f"the runbook has no '{section}' section"
    where = runbook.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    for topic in ("audit log", "model registry", "pseudonymisation key", "users"):
        assert topic in where, f"'Where things live' does not say where the {topic} is"
    for topic in ("promote", "rollback", "models:/clinfuse-risk@production"):
        assert topic in runbook


def test_make_targets_exist(runbook: str, deploy) -> None:
    used = set(re.findall(r"\bmake ([a-z][\w-]*)", runbook))
    assert used, "the runbook names no make target (it should say how its checks run)"
    missing = used - deploy.makefile_targets()
    assert not missing, f"no such make target: {sorted(missing)}"


def test_referenced_files_exist(runbook: str, deploy) -> None:
    # deploy/clinfuse-* are kubectl's Deployment references (`exec deploy/clinfuse-dashboard`), not files
    paths = {p.rstrip(".,;:)") for p in re.findall(r"\bdeploy/(?!clinfuse-)[\w./*-]*[\w*]", runbook)}
    assert len(paths) > 10
    for path in sorted(paths):
        if path in OPERATOR_FILES:
            ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=deploy.REPO, check=False)
            assert ignored.returncode == 0, f"{path} holds site settings or secrets and must be git-ignored"
        elif "*" in path:
            assert list(deploy.REPO.glob(path)), f"{path} matches nothing"
        else:
            assert (deploy.REPO / path).exists(), f"the runbook names missing {path}"


def test_compose_commands_name_real_services(commands, deploy) -> None:
    services = set(deploy.load_compose()["services"])
    checked = 0
    for argv in commands:
        parts = _compose_parts(argv)
        if parts is None:
            continue
        assert "-f" in argv and argv[argv.index("-f") + 1] == "deploy/docker-compose.yml", argv
        sub, arguments = parts
        positionals = _positionals(arguments)
        if sub in ("run", "exec"):
            assert positionals and positionals[0] in services, f"{' '.join(argv)}: unknown service"
            checked += 1
        elif sub in ("up", "stop", "logs", "build", "ps", "restart", "pull"):
            named = [p for p in positionals]
            assert set(named) <= services, f"{' '.join(argv)}: unknown services {set(named) - services}"
            scale = [a.split("=")[0] for a in arguments if re.fullmatch(r"[\w-]+=\d+", a)]
            assert set(scale) <= services
            checked += 1
        elif sub == "cp":
            sources = [p.split(":")[0] for p in positionals if ":" in p]
            assert sources and set(sources) <= services, f"{' '.join(argv)}"
            checked += 1
        else:
            raise AssertionError(f"unexpected compose subcommand in {' '.join(argv)}")
    assert checked >= 8


def test_kubectl_commands_name_real_resources(commands, deploy) -> None:
    manifests = deploy.k8s_manifests()
    names = {(m.kind, m.name) for m in manifests}
    pod_labels = [deploy.pod_template(m.doc)["metadata"]["labels"] for m in manifests if deploy.pod_template(m.doc)]
    checked = 0
    for argv in commands:
        if argv[:1] != ["kubectl"]:
            continue
        if "-n" in argv:
            assert argv[argv.index("-n") + 1] == deploy.NAMESPACE
        applies = {"apply", "create", "delete", "diff"} & set(argv)  # elsewhere -f is --follow (logs)
        files = {argv[i + 1] for i, token in enumerate(argv[:-1]) if token in ("-f", "-k") and applies}
        for token in argv:
            if token in files:
                continue
            for part in token.split("="):
                if match := re.fullmatch(r"(deploy|deployment|svc|service|cronjob|job)/([a-z0-9-]+)", part):
                    assert (KUBECTL_KINDS[match.group(1)], match.group(2)) in names, f"{' '.join(argv)}: {part}"
                    checked += 1
        if "-l" in argv:
            key, _, value = argv[argv.index("-l") + 1].partition("=")
            assert any(labels.get(key) == value for labels in pod_labels), f"{' '.join(argv)}: no such pods"
        for name in files:
            assert name == "-" or (deploy.REPO / name).exists(), f"{' '.join(argv)}: no file {name}"
    assert checked >= 8


def test_environment_variables_exist(runbook: str, deploy) -> None:
    deployment_files = [deploy.COMPOSE_FILE, deploy.DEPLOY / ".env.example", *deploy.DOCKERFILES,
                        *deploy.K8S.glob("*.yaml")]  # fmt: skip
    mlflow = _package_folder("mlflow")
    deployment_files += [mlflow / "utils" / "cli_args.py", mlflow / "environment_variables.py"]  # MLflow's settings
    known = " ".join(p.read_text() for p in deployment_files)
    for folder in deploy.pyproject()["tool"]["setuptools"]["package-dir"].values():
        known += " ".join(p.read_text() for p in (deploy.REPO / folder).rglob("*.py"))
    for name in sorted(set(re.findall(r"\b((?:CLINFUSE|MLFLOW)_[A-Z_]+)\b", runbook))):
        assert name in known, f"the runbook names {name}, which nothing reads or sets"


def _package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec and spec.submodule_search_locations, f"{name} is not installed"
    return Path(spec.submodule_search_locations[0])


def test_online_scoring_is_documented(runbook: str, deploy) -> None:
    online = runbook.split("## Online scoring", 1)[1].split("\n## ", 1)[0]
    for topic in ("mlflow models build-docker", "generate-dockerfile", "docs/serving.md", "/invocations",
                  "--env-manager local", "requirements.txt", "pip wheel --no-deps"):  # fmt: skip
        assert topic in online, f"the runbook's online scoring section does not cover {topic}"
    upgrade = runbook.split("## Upgrade a model by alias", 1)[1].split("\n## ", 1)[0]
    assert "rollout restart deployment/clinfuse-serving" in upgrade, "a promotion must restart online scoring"
    assert "restart serving" in upgrade


def test_model_image_settings_match_mlflow(runbook: str) -> None:
    """What the runbook says about the image `mlflow models build-docker` makes, checked against MLflow's source: the
    switches it names exist, uvicorn listens where it says once nginx is off, and nginx forwards what it says."""
    from mlflow.models import container

    online = runbook.split("## Online scoring", 1)[1].split("\n## ", 1)[0]
    source = Path(container.__file__).read_text()
    assert f'DISABLE_NGINX = "{container.DISABLE_NGINX}"' in source and f"{container.DISABLE_NGINX}=true" in online
    assert '"MLFLOW_MODELS_WORKERS"' in source and container.MODEL_PATH in online
    assert f"containerPort: {container.DEFAULT_INFERENCE_SERVER_PORT}" in online
    uvicorn = (_package_folder("uvicorn") / "main.py").read_text()
    assert '"auto_envvar_prefix": "UVICORN"' in uvicorn and "UVICORN_HOST=0.0.0.0" in online
    nginx = (Path(container.__file__).parent / "scoring_server" / "nginx.conf").read_text()
    assert f"listen {container.DEFAULT_NGINX_SERVER_PORT}" in nginx and "location ~ ^/(ping|invocations)" in nginx
    assert f"nginx on {container.DEFAULT_NGINX_SERVER_PORT}" in online


def test_services_and_workloads_are_all_described(runbook: str, deploy) -> None:
    for service in deploy.load_compose()["services"]:
        assert f"`{service}`" in runbook, f"compose service {service} is not in the runbook"
    for manifest in deploy.k8s_manifests():
        if manifest.kind in ("Deployment", "CronJob", "Secret", "PersistentVolumeClaim"):
            assert f"`{manifest.name}`" in runbook, f"{manifest.kind} {manifest.name} is not in the runbook"
    assert "train-job.yaml" in runbook and "secrets.example.yaml" in runbook


def test_storage_names_exist(runbook: str, deploy) -> None:
    volumes = set(deploy.load_compose()["volumes"])
    project = deploy.load_compose()["name"]
    for volume in re.findall(rf"`{project}_([\w-]+)`", runbook):
        assert volume in volumes, f"compose volume {project}_{volume} does not exist"
    claims = {m.name for m in deploy.k8s_manifests() if m.kind == "PersistentVolumeClaim"}
    for claim in re.findall(r"PVC `([\w-]+)`", runbook):
        assert claim in claims, f"PVC {claim} does not exist"


def test_build_arguments_and_defaults_are_documented(runbook: str, deploy) -> None:
    for path in deploy.DOCKERFILES:
        dockerfile = deploy.parse_dockerfile(path)
        for instruction in dockerfile.all("ARG"):
            name, _, default = instruction.value.partition("=")
            row = next((line for line in runbook.splitlines() if line.startswith(f"| `{name}`")
                        and ("both" in line or path.name.split(".")[0] in line)), None)  # fmt: skip
            assert row, f"build argument {name} of {path.name} is not in the runbook's table"
            assert f"`{default}`" in row, f"{name}: the runbook's default differs from {path.name}'s {default}"


def test_images_and_versions_match(runbook: str, deploy) -> None:
    compose = deploy.load_compose()
    mlflow_image = compose["services"]["mlflow"]["image"]
    assert f"`{mlflow_image}`" in runbook
    version = deploy.pyproject()["project"]["version"]
    tags = set(re.findall(r"clinfuse/(?:gpu|dashboard):([\w.-]+)", runbook))
    assert tags == {version}, f"the runbook builds {tags}, the project is {version}"
