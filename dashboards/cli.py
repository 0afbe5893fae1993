"""`clinfuse dashboard` and `clinfuse users`: serve the Streamlit app, manage its users.

Registered into the main CLI by `register(app)`. Imports stay inside the commands, so `clinfuse --help` never
loads streamlit, pandas or torch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

DEMO_USERS = (("demo-clinician", "clinician"), ("demo-scientist", "data_scientist"))

users_app = typer.Typer(
    name="users", help="Dashboard users: add, remove, list, or create the demo users.", no_args_is_help=True
)

UsersOption = Annotated[
    Path | None,
    typer.Option(
        "--users", help="users file (default $CLINFUSE_DASHBOARD_USERS, else $CLINFUSE_HOME/dashboard/users.yaml)"
    ),
]


def _users_file(users: Path | None) -> Path:
    from clinfuse.dashboards.dashboard_config import users_path

    return users if users is not None else users_path()


def dashboard_command(
    scores: Annotated[
        Path | None, typer.Option("--scores", help="scores Parquet written by `clinfuse score` (with --explain)")
    ] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8501,
    host: Annotated[str, typer.Option("--host", help="address to listen on; 0.0.0.0 exposes it")] = "127.0.0.1",
    users: UsersOption = None,
    audit_log: Annotated[Path | None, typer.Option("--audit-log", help="append-only JSON-lines audit log")] = None,
    settings: Annotated[
        Path | None, typer.Option("--settings", help="dashboard settings YAML (bands, sessions)")
    ] = None,
) -> None:
    """Serve the clinician dashboard for a scores file (reads scores, explanations and the model; never retrains)."""
    from clinfuse.dashboards import dashboard_config as config
    from clinfuse.dashboards.users import UserStore
    from clinfuse.platform.errors import ClinFuseError

    scores = scores or (Path(os.environ[config.SCORES_ENV]) if os.environ.get(config.SCORES_ENV) else None)
    if scores is None:
        raise ClinFuseError("no scores file given", "pass --scores PATH (written by `clinfuse score --explain`)")
    scores = scores.resolve()
    from clinfuse.dashboards.data_source import open_results

    open_results(scores)  # a wrong file fails here, with its message, not in the browser
    users_file = _users_file(users).resolve()
    if not UserStore(users_file).users():
        raise ClinFuseError(
            f"no dashboard users in {users_file}",
            "create one with `clinfuse users add NAME --role clinician` or `clinfuse users demo`",
        )
    env = dict(os.environ)
    env.update({config.SCORES_ENV: str(scores), config.USERS_ENV: str(users_file)})
    if audit_log is not None:
        env[config.AUDIT_ENV] = str(audit_log.resolve())
    if settings is not None:
        if not settings.is_file():
            raise ClinFuseError(f"dashboard settings file {settings} not found", "see docs/dashboard.md")
        env[config.SETTINGS_ENV] = str(settings.resolve())
    config.load_settings(Path(env[config.SETTINGS_ENV]) if env.get(config.SETTINGS_ENV) else None)  # fail early
    command = streamlit_command(port, host)
    url_host = "localhost" if host in {"127.0.0.1", "0.0.0.0"} else host
    typer.echo(
        f"ClinFuse dashboard on http://{url_host}:{port} (scores {scores}; audit log "
        f"{env.get(config.AUDIT_ENV) or config.audit_path()}); Ctrl+C stops it"
    )
    raise typer.Exit(_serve(command, env))


def streamlit_command(port: int, host: str) -> list[str]:
    """`streamlit run` on the packaged app, wrapped with security headers (dashboard_server.py): headless, no usage
    statistics, no file watching, no tracebacks in the browser (they stay in the server log). The protections
    (XSRF, CORS) are pinned on and the extra surfaces (agent API, static folder) off, so a stray
    ~/.streamlit/config.toml cannot change them: command-line flags take precedence over it."""
    app_path = Path(__file__).with_name("dashboard_server.py")
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--client.showErrorDetails",
        "none",
        "--client.toolbarMode",
        "viewer",
        "--global.developmentMode",
        "false",
        "--server.enableXsrfProtection",
        "true",
        "--server.enableCORS",
        "true",
        "--server.enableAgentApi",
        "false",
        "--server.enableStaticServing",
        "false",
        "--logger.level",
        "warning",
        "--theme.base",
        "light",
    ]


def _serve(command: list[str], env: dict[str, str]) -> int:
    """Run the server in the foreground; SIGTERM / Ctrl+C stop it cleanly."""
    process = subprocess.Popen(command, env=env)

    def stop(signum, frame) -> None:  # noqa: ARG001
        process.terminate()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="user name (letters, digits, _ . @ -)")],
    role: Annotated[str, typer.Option("--role", help="clinician or data_scientist")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="set a new password/role for an existing user")] = False,
    users: UsersOption = None,
) -> None:
    """Add a dashboard user (prompts for the password twice unless --password-stdin)."""
    from clinfuse.dashboards.users import ROLES, UserStore
    from clinfuse.platform.errors import ClinFuseError

    if role not in ROLES:
        raise ClinFuseError(f"unknown role '{role}'", f"use one of {', '.join(ROLES)}")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    store = UserStore(_users_file(users))
    user = store.add(name, role, password, replace=replace)
    typer.echo(f"user {user.name} ({user.role}) saved in {store.path}")


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument()], users: UsersOption = None) -> None:
    """Remove a dashboard user (an open session of that user ends at its next interaction)."""
    from clinfuse.dashboards.users import UserStore

    store = UserStore(_users_file(users))
    store.remove(name)
    typer.echo(f"user {name} removed from {store.path}")


@users_app.command("list")
def users_list(users: UsersOption = None) -> None:
    """List dashboard users and their roles (never the hashes)."""
    from clinfuse.dashboards.users import UserStore

    store = UserStore(_users_file(users))
    entries = store.users()
    if not entries:
        typer.echo(f"no users in {store.path}; add one with `clinfuse users add NAME --role clinician`")
        return
    for user in entries:
        typer.echo(f"{user.name:<24} {user.role}")


@users_app.command("demo")
def users_demo(users: UsersOption = None) -> None:
    """Create the demo users with random passwords, printed once; does nothing when the users file exists."""
    import secrets

    from clinfuse.dashboards.users import UserStore

    store = UserStore(_users_file(users))
    if store.exists():
        typer.echo(
            f"dashboard users already exist in {store.path} (demo passwords were printed when they were "
            "created); reset one with `clinfuse users add NAME --role ROLE --replace`"
        )
        return
    created = []
    for name, role in DEMO_USERS:
        password = secrets.token_urlsafe(12)
        store.add(name, role, password)
        created.append((name, role, password))
    typer.echo(f"Dashboard demo users (shown only now; only bcrypt hashes are kept, in {store.path}):")
    for name, role, password in created:
        typer.echo(f"  user {name:<16} password {password}   ({role})")


def register(app: typer.Typer) -> None:
    """Add `dashboard` and the `users` group to the `clinfuse` command line."""
    app.command("dashboard")(dashboard_command)
    app.add_typer(users_app, name="users")
