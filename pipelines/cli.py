"""The `clinfuse` command line: one subcommand per job; user mistakes print one line and exit 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from clinfuse.platform.errors import ClinFuseError

app = typer.Typer(
    name="clinfuse",
    help="ClinFuse: multimodal clinical risk models (DICOM + genomics + EHR), explained per modality.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """ClinFuse: multimodal clinical risk models (DICOM + genomics + EHR), explained per modality."""


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option("--out", help="folder to write the cohort into")],
    patients: Annotated[int, typer.Option("--patients", help="number of patients")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="random seed; equal seeds give identical files")] = 0,
) -> None:
    """Generate the synthetic demo cohort: DICOM, expression tables, MIMIC-IV EHR, cohort.yaml, truth."""
    from time import perf_counter

    from clinfuse.platform.demo import generate_demo_cohort

    started = perf_counter()
    counts = generate_demo_cohort(out, patients=patients, seed=seed)
    summary = ", ".join(f"{k}={v}" for k, v in counts.items())
    typer.echo(f"demo cohort written to {out} in {perf_counter() - started:.1f}s: {summary}")


def main() -> None:
    """Entry point: runs the app, turning ClinFuseError into one line on stderr and exit code 2."""
    try:
        app()
    except ClinFuseError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
