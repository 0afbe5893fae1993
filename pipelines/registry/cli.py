"""`clinfuse models list | show | register | promote | rollback`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

models_app = typer.Typer(help="Registered models (MLflow registry): list, show, register, promote, roll back, and "
                         "example requests for their online scoring endpoint.",
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
    registry = _registry()
    version = registry.register(run, name, alias)
    suffix = f" and promoted to @{alias}" if alias else ""
    typer.echo(f"registered {name} version {version}{suffix}; score with --model models:/{name}/{version}")
    if registry.local:  # MLflow's own tools look in ./mlflow.db unless told where ClinFuse's private store is
        typer.echo(f"MLflow tools (mlflow models serve, mlflow.pyfunc.load_model) find it with: "
                   f"export MLFLOW_TRACKING_URI={registry.tracking_uri} (docs/serving.md)")  # fmt: skip


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


@models_app.command("request")
def request(
    ref: Annotated[str, typer.Argument(help="models:/NAME@ALIAS or models:/NAME/VERSION")],
    config: Annotated[Path, typer.Option("--config", help="cohort.yaml of the site whose patients to send")],
    patient: Annotated[list[str], typer.Option("--patient", help="source patient id (repeatable)")],
    out: Annotated[Path, typer.Option("--out", help="JSON request body to write (holds the patients' data)")],
) -> None:
    """Write the online scoring request (`POST /invocations` body) for patients of a site's cohort, read from its
    sources as the model's modalities need them (docs/serving.md)."""
    import json
    import os

    from clinfuse.pipelines.serving.example import example_request

    body = example_request(config, _registry().resolve(ref).path, patient)
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(f".{out.name}.partial")
    staged.write_text(json.dumps(body, indent=1))
    os.replace(staged, out)
    typer.echo(f"wrote the request for {len(patient)} patient(s) to {out}; it holds their data: keep it private")
