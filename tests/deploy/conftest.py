"""Readers for the deployment files (Dockerfiles, .dockerignore, compose, Kubernetes, the runbook) and the checks
they share: every command line they hold is parsed and checked against the real command-line interfaces.

No Docker engine, cluster or network is used. Test modules get these helpers through the `deploy` fixture and get
one test per file, document or command line through `pytest_generate_tests` (parametrized fixture names below).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
RUNBOOK = DEPLOY / "README.md"
DOCKERFILES = sorted(DEPLOY.glob("*.Dockerfile"))
IMAGE_PREFIX = "clinfuse/"  # deploy/<name>.Dockerfile builds clinfuse/<name>
NAMESPACE = "clinfuse"
# Kubernetes files applied by hand rather than through kustomization.yaml (the runbook says why and how).
K8S_NOT_IN_KUSTOMIZATION = {"secrets.example.yaml", "train-job.yaml"}
# Kubernetes YAML files that are not manifests: kustomize's own file and the file its configMapGenerator reads.
K8S_NOT_MANIFESTS = {"kustomization.yaml", "dashboard-settings.yaml"}
SHELLS = {"sh", "/bin/sh", "bash", "/bin/bash"}


def relative(path: Path) -> str:
    return str(path.relative_to(REPO))


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# ---------------------------------------------------------------------------------------------------------------
# YAML


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _safe_documents(path: Path) -> list[Any]:
    """Documents of a file, or none when it does not parse (test_yaml_files reports that, once)."""
    try:
        return load_yaml_documents(path)
    except (OSError, yaml.YAMLError):
        return []


# ---------------------------------------------------------------------------------------------------------------
# Dockerfiles


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    value: str  # the arguments, continuation lines joined
    line: int
    stage: int  # index of the FROM this instruction belongs to (-1: before the first FROM)

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form's argument list, or None for the shell form."""
        text = self.value.strip()
        if not text.startswith("["):
            return None
        parsed = json.loads(text)
        assert isinstance(parsed, list) and all(isinstance(x, str) for x in parsed), f"line {self.line}: bad JSON"
        return parsed

    def flags(self) -> tuple[dict[str, str], str]:
        """Leading --flag=value options (COPY --from=..., RUN --mount=...) and the rest."""
        flags, rest = {}, self.value.strip()
        while match := re.match(r"--([a-z-]+)(?:=(\S+))?\s+", rest):
            flags[match.group(1)] = match.group(2) or ""
            rest = rest[match.end() :]
        return flags, rest


@dataclass
class Dockerfile:
    path: Path
    instructions: list[Instruction]
    global_args: dict[str, str]
    stages: list[dict[str, str]]  # {"image": resolved base, "alias": name or ""}

    def in_stage(self, stage: int, keyword: str | None = None) -> list[Instruction]:
        return [i for i in self.instructions if i.stage == stage and (keyword is None or i.keyword == keyword)]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    @property
    def final_stage(self) -> int:
        return len(self.stages) - 1

    @property
    def image_name(self) -> str:
        return IMAGE_PREFIX + self.path.name.removesuffix(".Dockerfile")


def parse_dockerfile(path: Path) -> Dockerfile:
    """Docker's line rules: comments and blank lines dropped (also inside continuations), `\\` continues a line."""
    instructions: list[Instruction] = []
    global_args: dict[str, str] = {}
    stages: list[dict[str, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, value = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = value.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            stages.append({"image": image, "alias": alias})
        elif keyword == "ARG" and not stages:
            name, _, default = value.strip().partition("=")
            global_args[name] = default
        instructions.append(Instruction(keyword, value.strip(), start, len(stages) - 1))
    assert not pending, f"{path}: the last line ends with a continuation"
    return Dockerfile(path, instructions, global_args, stages)


def dockerignore_rules(path: Path) -> list[tuple[bool, re.Pattern]]:
    """(exclusion?, regex) per pattern of a .dockerignore, compiled as moby's patternmatcher does."""
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = pattern.strip("/")
        while "//" in pattern:
            pattern = pattern.replace("//", "/")
        regex, i = "", 0
        while i < len(pattern):
            char = pattern[i]
            if char == "*":
                if pattern[i + 1 : i + 2] == "*":
                    i += 1
                    if pattern[i + 1 : i + 2] == "/":
                        i += 1
                    regex += ".*" if i + 1 >= len(pattern) else "(.*/)?"
                else:
                    regex += "[^/]*"
            elif char == "?":
                regex += "[^/]"
            elif char == "\\" and i + 1 < len(pattern):
                i += 1
                regex += re.escape(pattern[i])
            else:
                regex += re.escape(char)
            i += 1
        rules.append((not negated, re.compile(f"^{regex}$")))
    return rules


def dockerignore_excludes(rules: list[tuple[bool, re.Pattern]], path: str) -> bool:
    """Whether the build context leaves `path` out: the last matching rule wins; a rule matching a parent folder
    matches everything below it (moby's Matches)."""
    parts = path.split("/")
    excluded = False
    for exclusion, regex in rules:
        matched = bool(regex.match(path)) or any(regex.match("/".join(parts[:n])) for n in range(1, len(parts)))
        if matched:
            excluded = exclusion
    return excluded


# ---------------------------------------------------------------------------------------------------------------
# compose


def interpolate(text: str) -> str:
    """Compose's variable interpolation with an empty environment: ${VAR:-default} -> default, $$ -> $."""
    text = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", text.replace("$$", "\0"))
    return text.replace("\0", "$")


def compose_variables(text: str) -> set[str]:
    return set(re.findall(r"(?<!\$)\$\{(\w+)", text))


def load_compose() -> dict:
    documents = _safe_documents(COMPOSE_FILE)
    return documents[0] if documents and isinstance(documents[0], dict) else {}


# ---------------------------------------------------------------------------------------------------------------
# Kubernetes


@dataclass(frozen=True)
class Manifest:
    path: Path
    index: int
    doc: dict

    @property
    def kind(self) -> str:
        return self.doc.get("kind", "?")

    @property
    def name(self) -> str:
        metadata = self.doc.get("metadata") or {}
        return metadata.get("name") or metadata.get("generateName") or "?"

    @property
    def id(self) -> str:
        return f"{self.path.name}#{self.index}:{self.kind}/{self.name}"


def k8s_manifests() -> list[Manifest]:
    manifests = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in K8S_NOT_MANIFESTS:
            continue
        manifests.extend(Manifest(path, i, doc) for i, doc in enumerate(_safe_documents(path)) if isinstance(doc, dict))
    return manifests


def pod_template(doc: dict) -> dict | None:
    """The pod template (metadata + spec) of a workload, or None for other kinds."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return spec.get("template")
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    if kind == "Pod":
        return doc
    return None


def containers(pod_spec: dict) -> list[tuple[str, dict]]:
    return [(group, c) for group in ("initContainers", "containers") for c in pod_spec.get(group) or []]


# ---------------------------------------------------------------------------------------------------------------
# Command lines: shell scripts split into simple commands, program invocations found in them


def shell_commands(script: str) -> list[list[str]]:
    """Simple commands of a shell script: lines joined at `\\`, comments dropped, split at && || ; | ( ) and newlines,
    redirections removed, leading VAR=value assignments dropped."""
    commands: list[list[str]] = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError as exc:  # unbalanced quotes
            raise AssertionError(f"cannot split shell line {line!r}: {exc}") from exc
        current: list[str] = []
        skip_next = False
        for index, token in enumerate(tokens):
            if skip_next:
                skip_next = False
                continue
            if token and set(token) <= set("();&|"):
                commands.append(current)
                current = []
            elif token and set(token) <= set("<>&"):
                skip_next = True  # the redirection's target
            elif token.isdigit() and index + 1 < len(tokens) and tokens[index + 1][:1] in "<>":
                continue  # the file descriptor of `2>&1`
            else:
                current.append(token)
        commands.append(current)
    result = []
    for command in commands:
        while command and re.match(r"^[A-Za-z_]\w*=", command[0]):
            command = command[1:]
        if command:
            result.append(command)
    return result


def argv_lists(command: list[str] | str | None) -> list[list[str]]:
    """Simple commands of a compose/Kubernetes/Dockerfile command: an exec list, `sh -c SCRIPT`, or a shell string."""
    if command is None:
        return []
    if isinstance(command, str):
        return shell_commands(command)
    command = [str(part) for part in command]
    if command[:1] == ["CMD-SHELL"]:
        return shell_commands(command[1])
    if command[:1] == ["CMD"]:
        command = command[1:]
    if len(command) >= 3 and command[0] in SHELLS and command[1] == "-c":
        return shell_commands(command[2])
    return [command] if command else []


@dataclass(frozen=True)
class Invocation:
    source: str
    program: str  # clinfuse, dask or mlflow
    argv: tuple[str, ...]  # after the program name
    complete: bool = True  # False: a command named in prose; required options are not demanded

    @property
    def id(self) -> str:
        words = [w for w in self.argv if not w.startswith("-")][:2]
        return f"{self.source}:{' '.join([self.program, *words])}"


PROGRAMS = ("clinfuse", "dask", "mlflow")


def invocations_in(argv: list[str], source: str, complete: bool = True, wrappers: frozenset = frozenset()):
    """Program invocations in one simple command: the program first, or right after `--` (kubectl exec), a compose
    service name (docker compose run/exec SERVICE) or a ClinFuse image (docker run IMAGE)."""
    found = []
    for index, token in enumerate(argv):
        program = token.rsplit("/bin/", 1)[-1]
        if program not in PROGRAMS or (token != program and not token.endswith(f"/bin/{program}")):
            continue
        previous = argv[index - 1] if index else None
        image = previous is not None and re.match(r"^([\w.-]+(:\d+)?/)*clinfuse/[\w.-]+(:[\w.${}:-]+)?$", previous)
        if previous is None or previous == "--" or previous in wrappers or image:
            found.append(Invocation(source, program, tuple(argv[index + 1 :]), complete))
    return found


def interpolated(command):
    if isinstance(command, str):
        return interpolate(command)
    if isinstance(command, list):
        return [interpolate(str(part)) for part in command]
    return command


def dockerfile_invocations() -> list[Invocation]:
    found = []
    for path in DOCKERFILES:
        dockerfile = parse_dockerfile(path)
        for instruction in dockerfile.instructions:
            source = f"{relative(path)}:{instruction.line}"
            if instruction.keyword in ("CMD", "ENTRYPOINT", "RUN"):
                command = instruction.exec_form()
                if command is None:
                    command = instruction.flags()[1]
                for argv in argv_lists(command):
                    found += invocations_in(argv, source)
            elif instruction.keyword == "HEALTHCHECK":
                _, _, command = instruction.value.partition("CMD ")
                for argv in argv_lists(json.loads(command) if command.strip().startswith("[") else command):
                    found += invocations_in(argv, source)
    return found


def compose_invocations() -> list[Invocation]:
    found = []
    for name, service in (load_compose().get("services") or {}).items():
        source = f"compose:{name}"
        entrypoint = service.get("entrypoint")
        command = service.get("command")
        if entrypoint is not None:
            entry = entrypoint if isinstance(entrypoint, list) else shlex.split(entrypoint)
            command = entry + (command if isinstance(command, list) else shlex.split(command or ""))
        for argv in argv_lists(interpolated(command)):
            found += invocations_in(argv, source)
        test = (service.get("healthcheck") or {}).get("test")
        for argv in argv_lists(interpolated(test)):
            found += invocations_in(argv, f"{source}:healthcheck")
    return found


def k8s_invocations() -> list[Invocation]:
    found = []
    for manifest in k8s_manifests():
        template = pod_template(manifest.doc)
        if not template:
            continue
        for _, container in containers(template.get("spec") or {}):
            argv = [*(container.get("command") or []), *(container.get("args") or [])]
            for simple in argv_lists(argv):
                found += invocations_in(simple, f"{manifest.path.name}:{container.get('name')}")
    return found


def runbook_blocks(text: str) -> list[tuple[int, str]]:
    """(line, code) of the fenced shell blocks of a Markdown file."""
    blocks, current, start, language = [], None, 0, ""
    for number, line in enumerate(text.splitlines(), start=1):
        fence = re.match(r"^\s*```(\w*)", line)
        if fence and current is None:
            current, start, language = [], number, fence.group(1)
        elif fence:
            if language in ("bash", "sh", "shell", "console", ""):
                blocks.append((start, "\n".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def runbook_inline_code(text: str) -> list[tuple[int, str]]:
    outside = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return [(outside.count("\n", 0, m.start()) + 1, m.group(1)) for m in re.finditer(r"`([^`\n]+)`", outside)]


def runbook_invocations() -> list[Invocation]:
    if not RUNBOOK.is_file():
        return []
    text = RUNBOOK.read_text()
    services = frozenset(load_compose().get("services") or {})
    found = []
    for start, block in runbook_blocks(text):
        lines = block.split("\n")
        index = 0
        while index < len(lines):  # one logical line (continuations joined) at a time, for exact line numbers
            first, logical = index, lines[index]
            while logical.endswith("\\") and index + 1 < len(lines):
                index += 1
                logical = logical[:-1] + " " + lines[index]
            index += 1
            for argv in shell_commands(logical):
                found += invocations_in(argv, f"README.md:{start + first + 1}", True, services)
    for line, code in runbook_inline_code(text):
        if not re.search(r"\s", code.strip()):
            continue  # a name (`clinfuse`, `mlflow`), not a command line
        try:
            commands = shell_commands(code)
        except AssertionError:
            continue  # prose in backticks, not a command
        for argv in commands:
            found += invocations_in(argv, f"README.md:{line}", False, services)
    return found


def all_invocations() -> list[Invocation]:
    return dockerfile_invocations() + compose_invocations() + k8s_invocations() + runbook_invocations()


# ---------------------------------------------------------------------------------------------------------------
# Checking an argument list against a click command tree


def _refused(command, param, value: str) -> str | None:
    """Why the parameter's own type conversion and checks (int, ranges, choices) refuse a value, or None.
    Values holding a shell or Kubernetes variable are taken as given."""
    if "$" in value:
        return None
    if getattr(getattr(param, "type", None), "exists", False):
        return None  # a path inside the container (a mounted secret), absent here
    try:
        param.process_value(command.context_class(command, info_name=command.name), value)
    except Exception as exc:  # click's BadParameter, or typer's own conversion error
        return exc.format_message() if hasattr(exc, "format_message") else str(exc)
    return None


def _help_names(command) -> set[str]:
    return set((command.context_settings or {}).get("help_option_names") or ["--help"])


def _is_group(command) -> bool:
    return hasattr(command, "commands")  # click.Group or typer's vendored copy of it


def check_click_argv(root, program: str, argv: list[str], complete: bool) -> list[str]:
    """Problems with `program argv` for the click command `root` (click's or typer's vendored click): unknown
    commands or options, missing option values, values their type refuses, too many arguments and, when
    `complete`, missing required parameters."""
    problems: list[str] = []
    command, path, i = root, [program], 0
    while True:
        options = {}
        for param in command.params:
            if param.param_type_name == "option":
                for name in (*param.opts, *param.secondary_opts):
                    options[name] = param
        where = " ".join(path)
        positionals: list[str] = []
        seen: set[str] = set()
        wants_help = False
        while i < len(argv):
            token = argv[i]
            if token == "--":
                positionals += argv[i + 1 :]
                i = len(argv)
                break
            if token in _help_names(command):
                wants_help, i = True, i + 1
                continue
            if token.startswith("-") and len(token) > 1 and not re.match(r"^-\d", token):
                name, equals, value = token.partition("=")
                param = options.get(name)
                i += 1
                if param is None:
                    problems.append(f"`{where}` has no option {name} (it has: {', '.join(sorted(options))})")
                    continue
                seen.add(param.name)
                if param.is_flag or param.count:
                    if equals:
                        problems.append(f"`{where} {name}` is a flag and takes no value")
                    continue
                if not equals:
                    if i >= len(argv):
                        problems.append(f"`{where} {name}` needs a value")
                        continue
                    value, i = argv[i], i + 1
                if problem := _refused(command, param, value):
                    problems.append(f"`{where} {name} {value}`: {problem}")
                continue
            if _is_group(command):
                break
            positionals.append(token)
            i += 1
        if _is_group(command) and i < len(argv):
            name = argv[i]
            sub = command.commands.get(name)
            if sub is None:
                problems.append(f"`{where}` has no command '{name}' (it has: {', '.join(sorted(command.commands))})")
                return problems
            command, i = sub, i + 1
            path.append(name)
            continue
        if wants_help or _is_group(command):
            return problems
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        for param, value in zip(arguments, positionals, strict=False):
            if param.nargs < 0:
                break
            if problem := _refused(command, param, value):
                problems.append(f"`{where}` argument {param.name.upper()} {value}: {problem}")
        unlimited = any(p.nargs < 0 for p in arguments)
        most = sum(max(p.nargs, 0) for p in arguments)
        if not unlimited and len(positionals) > most:
            problems.append(f"`{where}` takes {most} argument(s), given {len(positionals)}: {positionals}")
        if complete:
            least = sum(max(p.nargs, 1) for p in arguments if p.required)
            if len(positionals) < least:
                problems.append(f"`{where}` needs {least} argument(s), given {len(positionals)}")
            for param in command.params:
                if param.param_type_name == "option" and param.required and param.name not in seen:
                    problems.append(f"`{where}` needs {param.opts[0]}")
        return problems


def clinfuse_click_command():
    import typer
    from clinfuse.pipelines.cli import app

    return typer.main.get_command(app)


def dask_click_command():
    """`dask scheduler` and `dask worker` as one click group (dask's own group loads them through entry points)."""
    import click
    from distributed.cli.dask_scheduler import main as scheduler
    from distributed.cli.dask_worker import main as worker

    return click.Group("dask", commands={"scheduler": scheduler, "worker": worker})


def mlflow_models_click_command():
    """`mlflow models ...` (serve, build-docker, generate-dockerfile, ...) as MLflow declares it, under an `mlflow`
    group (importing only this group is faster than MLflow's whole CLI)."""
    import click
    from mlflow.models.cli import commands

    return click.Group("mlflow", commands={"models": commands})


def mlflow_option_sources() -> str:
    """The source of MLflow's CLI (importing mlflow.cli takes seconds): where its options are declared."""
    import importlib.util

    spec = importlib.util.find_spec("mlflow")
    assert spec and spec.submodule_search_locations, "mlflow is not installed"
    root = Path(spec.submodule_search_locations[0])
    files = [*root.glob("cli.py"), *root.glob("cli/*.py"), *root.glob("utils/cli_args.py")]
    return "\n".join(f.read_text() for f in files)


# ---------------------------------------------------------------------------------------------------------------
# Markdown, Makefile


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, flags=re.M))


# ---------------------------------------------------------------------------------------------------------------
# pytest wiring


@dataclass
class _Collected:
    yaml_files: list[Path] = field(default_factory=yaml_files)
    dockerfiles: list[Path] = field(default_factory=lambda: list(DOCKERFILES))
    manifests: list[Manifest] = field(default_factory=k8s_manifests)
    invocations: list[Invocation] = field(default_factory=list)
    compose_services: list[str] = field(default_factory=lambda: sorted(load_compose().get("services") or {}))
    error: Exception | None = None  # why the command lines could not be read (a test reports it)


def _collect() -> _Collected:
    collected = _Collected()
    try:
        collected.invocations = all_invocations()
    except Exception as exc:  # reported by test_command_lines_are_readable, not as a collection error
        collected.error = exc
    return collected


_COLLECTED: _Collected | None = None


def collected() -> _Collected:
    global _COLLECTED
    if _COLLECTED is None:
        _COLLECTED = _collect()
    return _COLLECTED


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    found = collected()
    if "yaml_file" in metafunc.fixturenames:
        metafunc.parametrize("yaml_file", found.yaml_files, ids=relative)
    if "dockerfile_path" in metafunc.fixturenames:
        metafunc.parametrize("dockerfile_path", found.dockerfiles, ids=lambda p: p.name)
    if "manifest" in metafunc.fixturenames:
        metafunc.parametrize("manifest", found.manifests, ids=lambda m: m.id)
    if "workload" in metafunc.fixturenames:
        workloads = [m for m in found.manifests if pod_template(m.doc) is not None]
        metafunc.parametrize("workload", workloads, ids=lambda m: m.id)
    if "compose_service" in metafunc.fixturenames:
        metafunc.parametrize("compose_service", found.compose_services)
    for program in PROGRAMS:
        fixture = f"{program}_invocation"
        if fixture in metafunc.fixturenames:
            chosen = [inv for inv in found.invocations if inv.program == program]
            metafunc.parametrize(fixture, chosen, ids=[inv.id for inv in chosen])


@pytest.fixture(scope="session")
def deploy() -> SimpleNamespace:
    """The helpers above, for the test modules (which cannot import this conftest)."""
    return SimpleNamespace(
        REPO=REPO, DEPLOY=DEPLOY, K8S=K8S, COMPOSE_FILE=COMPOSE_FILE, RUNBOOK=RUNBOOK, DOCKERFILES=DOCKERFILES,
        NAMESPACE=NAMESPACE, K8S_NOT_IN_KUSTOMIZATION=K8S_NOT_IN_KUSTOMIZATION, IMAGE_PREFIX=IMAGE_PREFIX,
        relative=relative, pyproject=pyproject, load_yaml_documents=load_yaml_documents,
        parse_dockerfile=parse_dockerfile, dockerignore_rules=dockerignore_rules,
        dockerignore_excludes=dockerignore_excludes, interpolate=interpolate, compose_variables=compose_variables,
        load_compose=load_compose, k8s_manifests=k8s_manifests, pod_template=pod_template, containers=containers,
        shell_commands=shell_commands, argv_lists=argv_lists, invocations_in=invocations_in,
        all_invocations=all_invocations, runbook_blocks=runbook_blocks, check_click_argv=check_click_argv,
        makefile_targets=makefile_targets, collected=collected,
    )  # fmt: skip


@pytest.fixture(scope="session")
def clinfuse_cli():
    return clinfuse_click_command()


@pytest.fixture(scope="session")
def dask_cli():
    return dask_click_command()


@pytest.fixture(scope="session")
def mlflow_cli_source() -> str:
    return mlflow_option_sources()


@pytest.fixture(scope="session")
def mlflow_models_cli():
    return mlflow_models_click_command()
