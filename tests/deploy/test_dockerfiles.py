"""The Dockerfiles: multi-stage, pinned bases, Python as the project requires, the project installed as pyproject
declares it, a fixed non-root user, no secrets in any layer, an allow-list build context, and entry points that
are the project's console scripts. (The command lines themselves are checked in test_cli_references.py.)"""

from __future__ import annotations

import importlib.util
import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE", re.I)
SECRET_SOURCE = re.compile(r"(\.key|\.pem|\.p12|\.env|users\.yaml|secrets?/|id_rsa)", re.I)


def _dockerfile(deploy, name: str):
    return deploy.parse_dockerfile(deploy.DEPLOY / name)


def _python_minor(dockerfile) -> str:
    """The Python version the image runs: python:3.X-... base, or the python3.X package a CUDA base installs."""
    base = dockerfile.stages[0]["image"]
    if match := re.match(r"^(?:docker\.io/)?(?:library/)?python:(3\.\d+)", base):
        return match.group(1)
    installed = {m for i in dockerfile.in_stage(0, "RUN") for m in re.findall(r"\bpython(3\.\d+)\b", i.value)}
    assert len(installed) == 1, f"{dockerfile.path.name}: cannot tell the Python version (found {installed})"
    return installed.pop()


def test_dockerfiles_exist(deploy) -> None:
    assert [p.name for p in deploy.DOCKERFILES] == ["dashboard.Dockerfile", "gpu.Dockerfile"]


def test_multi_stage_with_pinned_bases(dockerfile_path: Path, deploy) -> None:
    dockerfile = deploy.parse_dockerfile(dockerfile_path)
    first = next(i for i in dockerfile.instructions if i.keyword not in ("ARG",))
    assert first.keyword == "FROM", "only ARG may come before the first FROM"
    assert len(dockerfile.stages) >= 3, "expected base, builder and runtime stages"
    aliases = set()
    for stage in dockerfile.stages:
        image = stage["image"]
        if image not in aliases:
            assert "$" not in image, f"base image {image} has no default"
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag, f"base image {image} has no tag"
            assert tag != "latest" and re.search(r"\d", tag), f"base image {image} is not pinned to a version"
        aliases.add(stage["alias"])
    assert dockerfile.stages[-1]["alias"] == "runtime"


def test_python_version_matches_project_and_makefile(dockerfile_path: Path, deploy) -> None:
    dockerfile = deploy.parse_dockerfile(dockerfile_path)
    minor = _python_minor(dockerfile)
    requires = SpecifierSet(deploy.pyproject()["project"]["requires-python"])
    assert f"{minor}.0" in requires, f"Python {minor} does not satisfy requires-python {requires}"
    makefile = (deploy.REPO / "Makefile").read_text()
    wanted = re.search(r"sys\.version_info\[:2\] == \((\d+), (\d+)\)", makefile)
    assert wanted, "the Makefile no longer states the Python version it requires"
    assert minor == f"{wanted.group(1)}.{wanted.group(2)}", "the image's Python differs from the Makefile's"
    venvs = [i for i in dockerfile.all("RUN") if "-m venv" in i.value]
    assert venvs and all(f"python{minor} -m venv" in i.value for i in venvs)


def test_gpu_image_has_a_cuda_runtime_base_matching_torch(deploy) -> None:
    dockerfile = _dockerfile(deploy, "gpu.Dockerfile")
    base = dockerfile.stages[0]["image"]
    match = re.match(r"^nvidia/cuda:(\d+)\.\d+\.\d+-(?:cudnn-)?runtime-ubuntu\d+\.\d+$", base)
    assert match, f"{base} is not an nvidia/cuda runtime image"
    # The installed torch's build (read from torch/version.py: importing torch takes seconds) says which CUDA
    # major the PyPI wheels bring; a CPU-only build here says nothing.
    spec = importlib.util.find_spec("torch")
    text = (Path(spec.submodule_search_locations[0]) / "version.py").read_text()
    cuda = re.search(r"^cuda\b[^=]*=\s*'(\d+)\.", text, flags=re.M)
    if cuda:
        assert match.group(1) == cuda.group(1), f"{base} vs the installed torch's CUDA {cuda.group(1)}"


def test_dashboard_image_is_slim_and_installs_cpu_torch(deploy) -> None:
    dockerfile = _dockerfile(deploy, "dashboard.Dockerfile")
    assert re.match(r"^python:3\.\d+-slim", dockerfile.stages[0]["image"])
    builder = next(n for n, s in enumerate(dockerfile.stages) if s["alias"] == "builder")
    args = dict(i.value.split("=", 1) for i in dockerfile.in_stage(builder, "ARG") if "=" in i.value)
    assert args.get("TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cpu"


def test_project_is_installed_from_pyproject(dockerfile_path: Path, deploy) -> None:
    dockerfile = deploy.parse_dockerfile(dockerfile_path)
    builder = next(n for n, s in enumerate(dockerfile.stages) if s["alias"] == "builder")
    project = deploy.pyproject()
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= {f"{folder}/" for folder in project["tool"]["setuptools"]["package-dir"].values()}
    copied = set()
    for instruction in dockerfile.in_stage(builder, "COPY"):
        flags, rest = instruction.flags()
        sources = rest.split()[:-1]
        assert "from" not in flags
        assert "." not in sources and "./" not in sources, "copy named files, never the whole context"
        copied.update(sources)
    assert copied == needed, f"COPY {sorted(copied)} vs what `pip install` needs {sorted(needed)}"
    runs = " ".join(i.value for i in dockerfile.in_stage(builder, "RUN"))
    assert '--index-url "$TORCH_INDEX_URL"' in runs, "torch must come from the TORCH_INDEX_URL build argument"
    assert "pyproject.toml" in runs and '["dependencies"]' in runs, "dependencies must be read from pyproject.toml"
    assert re.search(r"pip install --no-deps /src\b", runs), "the project must be installed (not editable) from /src"
    assert " -e " not in runs and "--editable" not in runs
    assert "pip check" in runs


def test_runtime_stage_holds_the_venv_and_no_source(dockerfile_path: Path, deploy) -> None:
    dockerfile = deploy.parse_dockerfile(dockerfile_path)
    runtime = dockerfile.final_stage
    copies = dockerfile.in_stage(runtime, "COPY") + dockerfile.in_stage(runtime, "ADD")
    assert copies, "the runtime stage copies nothing"
    for instruction in copies:
        flags, rest = instruction.flags()
        assert flags.get("from") == "builder", f"line {instruction.line}: runtime copies only the builder's venv"
        assert rest.split() == ["/opt/venv", "/opt/venv"]
    env = " ".join(i.value for i in dockerfile.in_stage(runtime, "ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in env


def test_runs_as_fixed_non_root_user(dockerfile_path: Path, deploy) -> None:
    dockerfile = deploy.parse_dockerfile(dockerfile_path)
    runtime = dockerfile.final_stage
    users = dockerfile.in_stage(runtime, "USER")
    assert users, "no USER in the runtime stage"
    user = users[-1]
    match = re.fullmatch(r"(\d+):(\d+)", user.value)
    assert match, f"USER {user.value}: use a numeric UID:GID so Kubernetes can verify runAsNonRoot"
    uid, gid = match.groups()
    assert uid != "0" and gid != "0"
    assert all(i.line < user.line for i in dockerfile.in_stage(runtime) if i.keyword in ("COPY", "ADD"))
    runs = " ".join(i.value for i in dockerfile.in_stage(runtime, "RUN"))
    assert f"useradd --uid {uid} --gid {gid}" in runs and f"groupadd --gid {gid}" in runs
    assert f"chown {uid}:{gid} /data /var/lib/clinfuse" in runs, "volume mount points must belong to the user"


def test_no_secret_in_any_layer(dockerfile_path: Path, deploy) -> None:
    dockerfile = deploy.parse_dockerfile(dockerfile_path)
    for instruction in dockerfile.instructions:
        if instruction.keyword in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"(?:^|\s)([A-Za-z_][\w.]*)=", instruction.value) or [instruction.value.split()[0]]
            leaked = [n for n in names if SECRET_NAME.search(n)]
            assert not leaked, f"line {instruction.line}: {leaked} in {instruction.keyword} ends up in the image"
        if instruction.keyword in ("COPY", "ADD"):
            sources = instruction.flags()[1].split()[:-1]
            assert not [s for s in sources if SECRET_SOURCE.search(s)], f"line {instruction.line} copies a secret"
        assert instruction.keyword != "ADD", f"line {instruction.line}: use COPY (ADD fetches URLs, unpacks archives)"


def test_entrypoint_is_tini_and_command_a_console_script(dockerfile_path: Path, deploy) -> None:
    dockerfile = deploy.parse_dockerfile(dockerfile_path)
    runtime = dockerfile.final_stage
    entrypoint = dockerfile.in_stage(runtime, "ENTRYPOINT")[-1].exec_form()
    assert entrypoint == ["/usr/bin/tini", "--"], "tini as PID 1 forwards SIGTERM and reaps worker processes"
    assert any("tini" in i.value for i in dockerfile.in_stage(0, "RUN")), "tini is not installed"
    command = dockerfile.in_stage(runtime, "CMD")[-1].exec_form()
    assert command, "CMD must use the exec (JSON) form"
    assert command[0] in deploy.pyproject()["project"]["scripts"], f"CMD runs {command[0]}, not a project script"


def test_build_checks_the_entry_points(dockerfile_path: Path, deploy) -> None:
    dockerfile = deploy.parse_dockerfile(dockerfile_path)
    runs = [i.value for i in dockerfile.in_stage(dockerfile.final_stage, "RUN")]
    assert any("clinfuse --help" in r for r in runs), "the runtime stage should run `clinfuse --help` at build time"
    assert any("import" in r and "clinfuse.pipelines.cli" in r for r in runs)


def test_console_script_is_the_installed_entry_point(deploy) -> None:
    scripts = deploy.pyproject()["project"]["scripts"]
    installed = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    for name, target in scripts.items():
        assert installed.get(name) == target, (
            f"console script {name}: pyproject {target}, installed {installed.get(name)}"
        )
    for tool in ("dask", "mlflow"):
        assert tool in installed, f"the images run `{tool}`, which no installed package provides"


def test_dashboard_healthcheck_probes_streamlit_on_the_served_port(deploy) -> None:
    dockerfile = _dockerfile(deploy, "dashboard.Dockerfile")
    runtime = dockerfile.final_stage
    command = dockerfile.in_stage(runtime, "CMD")[-1].exec_form()
    assert command[:2] == ["clinfuse", "dashboard"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0", "inside a container the server must listen on all"
    assert [i.value for i in dockerfile.in_stage(runtime, "EXPOSE")] == [port]
    healthchecks = dockerfile.in_stage(runtime, "HEALTHCHECK")
    assert len(healthchecks) == 1
    assert f"http://127.0.0.1:{port}/_stcore/health" in healthchecks[0].value
    assert re.search(r"--start-period=\d+s", healthchecks[0].value)


def test_gpu_image_has_no_healthcheck_of_a_server(deploy) -> None:
    """The GPU image runs jobs and Dask processes: compose and Kubernetes probe those per service."""
    assert not _dockerfile(deploy, "gpu.Dockerfile").all("HEALTHCHECK")


def test_streamlit_settings_are_real_options(deploy) -> None:
    import streamlit.config

    known = {option.env_var for option in streamlit.config.get_config_options().values()}
    dockerfile = _dockerfile(deploy, "dashboard.Dockerfile")
    names = {n for i in dockerfile.all("ENV") for n in re.findall(r"(STREAMLIT_\w+)=", i.value)}
    assert names, "the dashboard image sets no Streamlit option"
    assert names <= known, f"not Streamlit options: {sorted(names - known)}"


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", "data/demo/cohort/cohort.yaml", ".git/HEAD", "runs/r1/model.safetensors", "mlruns/0/meta",
     "mlartifacts/1/a", "screenshots/a.png", "deploy/secrets/pseudonym.key", "deploy/.env", "pseudonym.key",
     "platform/__pycache__/errors.cpython-312.pyc", "dashboards/users.yaml", "tests/conftest.py", "docs/a.md",
     ".whl/x.whl", "build/lib/x.py", "clinfuse.egg-info/PKG-INFO"],
)  # fmt: skip
def test_build_context_leaves_out_local_state(path: str, dockerfile_path: Path, deploy) -> None:
    ignore = dockerfile_path.with_name(dockerfile_path.name + ".dockerignore")
    assert ignore.is_file(), f"{ignore.name} missing: BuildKit would send the whole repository"
    assert deploy.dockerignore_excludes(deploy.dockerignore_rules(ignore), path), f"{path} reaches the build"


def test_build_context_keeps_what_the_build_copies(dockerfile_path: Path, deploy) -> None:
    ignore = dockerfile_path.with_name(dockerfile_path.name + ".dockerignore")
    rules = deploy.dockerignore_rules(ignore)
    project = deploy.pyproject()
    needed = ["pyproject.toml", project["project"]["readme"]]
    for folder in project["tool"]["setuptools"]["package-dir"].values():
        files = [p for p in (deploy.REPO / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        needed += [deploy.relative(p) for p in files if not re.search(r"\.(key|env)$|users\.yaml$", p.name)]
    dropped = [path for path in needed if deploy.dockerignore_excludes(rules, path)]
    assert not dropped, f"the build context leaves out {dropped[:10]}"


def test_dockerignore_matcher_follows_docker_rules(deploy, tmp_path: Path) -> None:
    ignore = tmp_path / "x.dockerignore"
    ignore.write_text("*\n!src/\n**/*.pyc\n!src/keep.pyc\n/build\n")
    rules = deploy.dockerignore_rules(ignore)
    expected = {"a.txt": True, "data/x": True, "src/m.py": False, "src/a/b.pyc": True, "src/keep.pyc": False}
    assert {p: deploy.dockerignore_excludes(rules, p) for p in expected} == expected
