"""`clinfuse models list | show | register | promote | rollback`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

models_app = typer.Typer(help="Registered models (MLflow registry): list, show, register, promote, roll back.",
                         no_args_is_help=True)  # fmt: skip


def _registry():
    from clinfuse.pipelines.registry.store import ModelRegistry

    return ModelRegistry()


@models_app.command("list")
def list_models() -> None:
    """Every registered model and version with its aliases and test AUROC."""
    models = _registry().models()
    if not models:
        typer.echo("no registered models; register one with `clinfuse models register RUN --name NAME`")
        return
    for model in models:
        typer.echo(model["name"])
        for v in model["versions"]:
            aliases = f"  @{', @'.join(v['aliases'])}" if v["aliases"] else ""
            typer.echo(
                f"  version {v['version']}: test AUROC {v['test_auroc']}, commit {v['git_commit'][:12]}{aliases}"
            )


@models_app.command("show")
def show(ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or models:/NAME@ALIAS")]) -> None:
    """One version's registry entry, provenance and model card."""
    entry = _registry().show(ref)
    aliases = ", ".join(entry["aliases"]) or "none"
    typer.echo(f"{entry['name']} version {entry['version']} (aliases: {aliases}; run {entry['run_id']})")
    typer.echo(f"commit {entry['git_commit']}, cohort config hash {entry['cohort_config_hash']}\n")
    typer.echo(entry["model_card"])


@models_app.command("register")
def register(
    run: Annotated[Path, typer.Argument(help="an evaluated run folder (`clinfuse train` + `clinfuse evaluate`)")],
    name: Annotated[str, typer.Option("--name", help="registered model name")],
    alias: Annotated[str | None, typer.Option("--alias", help="also point this alias at the new version")] = None,
) -> None:
    """Register a run's model bundle as a new version."""
    version = _registry().register(run, name, alias)
    suffix = f" and promoted to @{alias}" if alias else ""
    typer.echo(f"registered {name} version {version}{suffix}; score with --model models:/{name}/{version}")


@models_app.command("promote")
def promote(
    name: Annotated[str, typer.Argument()],
    version: Annotated[int, typer.Argument(min=1)],
    alias: Annotated[str, typer.Option("--alias", help="alias to point at VERSION")] = "production",
) -> None:
    """Point an alias (default production) at a version."""
    _registry().promote(name, version, alias)
    typer.echo(f"{name}@{alias} -> version {version}")


@models_app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument()],
    alias: Annotated[str, typer.Option("--alias")] = "production",
) -> None:
    """Move an alias back to the version it held before its last promotion."""
    current, previous = _registry().rollback(name, alias)
    typer.echo(f"{name}@{alias}: version {current} -> version {previous}")
