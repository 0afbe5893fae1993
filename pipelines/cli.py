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
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    """ClinFuse: multimodal clinical risk models (DICOM + genomics + EHR), explained per modality."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


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


@app.command("ingest")
def ingest_command(
    config: Annotated[Path, typer.Option("--config", help="cohort.yaml describing the cohort and its modalities")],
    out: Annotated[Path, typer.Option("--out", help="feature cache folder (created or refreshed)")],
    workers: Annotated[int | None, typer.Option("--workers", help="processes for DICOM decoding")] = None,
) -> None:
    """Ingest DICOM, tables and EHR into a validated, de-identified feature cache (reuses what is unchanged)."""
    from clinfuse.platform.ingest import ingest

    result = ingest(config, out, workers=workers, progress=sys.stderr.isatty())
    if result.up_to_date:
        typer.echo(f"feature cache {out} is up to date (inputs, config and code unchanged)")
    else:
        typer.echo(
            f"feature cache written to {out}: rebuilt {result.rebuilt or 'nothing'}, "
            f"reused {result.reused or 'nothing'}; see {out / 'ingest_report.json'}"
        )


def main() -> None:
    """Entry point: user mistakes become one `error:` line on stderr and exit code 2, never a traceback."""
    try:
        code = app(standalone_mode=False)
    except ClinFuseError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.TyperException as exc:  # bad flag, bad value, missing option
        typer.echo(f"error: {exc.format_message()} (see 'clinfuse --help')", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
