"""The `clinfuse` command line: one subcommand per job; user mistakes print one line and exit 2."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from clinfuse.pipelines.registry.cli import models_app
from clinfuse.platform.demo.ehr_formats import EHR_FORMATS
from clinfuse.platform.demo.latent import MODALITY_NAMES, OPTIONAL_MODALITIES
from clinfuse.platform.errors import ClinFuseError

app = typer.Typer(
    name="clinfuse",
    help="ClinFuse: multimodal clinical risk models (DICOM + genomics + EHR), explained per modality.",
    pretty_exceptions_enable=False,
    add_completion=False,
)


app.add_typer(models_app, name="models")


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    """ClinFuse: multimodal clinical risk models (DICOM + genomics + EHR), explained per modality."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


# the demo's EHR layouts as a typer choice, so an unknown one is a one-line usage error
EhrFormat = Enum("EhrFormat", {name: name for name in EHR_FORMATS}, type=str)


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option("--out", help="folder to write the cohort into")],
    patients: Annotated[int, typer.Option("--patients", help="number of patients (see docs/demo-cohort.md)")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="random seed; equal seeds give identical files")] = 0,
    modalities: Annotated[
        str,
        typer.Option("--modalities", help=f"{','.join(MODALITY_NAMES)} plus any of {', '.join(OPTIONAL_MODALITIES)}"),
    ] = ",".join(MODALITY_NAMES),
    ct: Annotated[
        bool, typer.Option("--ct", help="add the CT modality (3D chest series); same as adding ct to --modalities")
    ] = False,
    ehr_format: Annotated[
        EhrFormat,
        typer.Option("--ehr-format", help="layout of the EHR: mimic4 (CSV), omop (CDM 5.4 CSV), meds, fhir (NDJSON)"),
    ] = EhrFormat.mimic4,
) -> None:
    """Generate the synthetic demo cohort: DICOM, expression tables, EHR (MIMIC-IV, OMOP, MEDS or FHIR: the same
    events), any optional modalities (--modalities, --ct), cohort.yaml, truth."""
    from time import perf_counter

    from clinfuse.platform.demo import generate_demo_cohort

    started = perf_counter()
    names = tuple(name.strip() for name in modalities.split(",") if name.strip())
    if ct and "ct" not in names:
        names += ("ct",)
    counts = generate_demo_cohort(out, patients=patients, seed=seed, modalities=names, ehr_format=ehr_format.value)
    summary = ", ".join(f"{k}={v}" for k, v in counts.items())
    typer.echo(f"demo cohort written to {out} in {perf_counter() - started:.1f}s: {summary}")


@app.command("ingest")
def ingest_command(
    config: Annotated[Path, typer.Option("--config", help="cohort.yaml describing the cohort and its modalities")],
    out: Annotated[Path, typer.Option("--out", help="feature cache folder (created or refreshed)")],
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="local worker processes for DICOM decoding, started only when the "
                     "measured decoding outlasts their start-up (default: cores)"),  # fmt: skip
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="decode on this Dask cluster, e.g. tcp://host:8786 (files at the same paths)"),
    ] = None,
) -> None:
    """Ingest DICOM, tables and EHR into a validated, de-identified feature cache (reuses what is unchanged)."""
    from clinfuse.platform.ingest import ingest

    result = ingest(config, out, workers=workers, progress=sys.stderr.isatty(), scheduler=scheduler)
    if result.up_to_date:
        typer.echo(f"feature cache {out} is up to date (inputs, config and code unchanged)")
    else:
        typer.echo(
            f"feature cache written to {out}: rebuilt {result.rebuilt or 'nothing'}, "
            f"reused {result.reused or 'nothing'}; see {out / 'ingest_report.json'}"
        )


@app.command("train")
def train_command(
    cache: Annotated[Path, typer.Option("--cache", help="feature cache written by `clinfuse ingest`")],
    out: Annotated[Path, typer.Option("--out", help="run folder for weights, predictions and logs")],
    max_epochs: Annotated[int, typer.Option("--max-epochs", min=1)] = 40,
    accelerator: Annotated[str, typer.Option("--accelerator", help="auto, cpu or gpu")] = "auto",
    devices: Annotated[str, typer.Option("--devices", help="devices per node (Lightning syntax)")] = "auto",
    num_nodes: Annotated[int, typer.Option("--num-nodes", min=1)] = 1,
    strategy: Annotated[str, typer.Option("--strategy", help="Lightning strategy, e.g. ddp")] = "auto",
    precision: Annotated[
        str, typer.Option("--precision", help="auto (bf16-mixed on GPU, 32-true on CPU), 32-true, bf16-mixed, 16-mixed")
    ] = "auto",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2)] = 32,
    patience: Annotated[int, typer.Option("--patience", min=1, help="epochs without fusion val AUROC gain")] = 10,
    branch_patience: Annotated[
        int, typer.Option("--branch-patience", min=1, help="epochs without a fall in a branch's own val loss")
    ] = 5,
    screening_fdr: Annotated[
        float,
        typer.Option(
            "--screening-fdr",
            min=0.0,
            max=0.5,
            help="false discovery rate for screening table inputs on training; 0 keeps all",
        ),
    ] = 0.1,
    encoder: Annotated[
        list[str] | None,
        typer.Option("--encoder", help="MODALITY=ARCHITECTURE or KIND=ARCHITECTURE (repeatable), e.g. ecg=resnet1d"),
    ] = None,
    image_encoder: Annotated[
        str | None, typer.Option("--image-encoder", help="same as --encoder dicom=ARCHITECTURE")
    ] = None,
    table_encoder: Annotated[
        str, typer.Option("--table-encoder", help="auto (chosen per table modality), linear, xgboost, mlp or snn")
    ] = "auto",
    num_workers: Annotated[int | None, typer.Option("--num-workers", help="loader workers (default: sized)")] = None,
    mlflow_uri: Annotated[
        str | None,
        typer.Option(
            "--mlflow-uri",
            help="MLflow tracking store of the training run (default: MLFLOW_TRACKING_URI, else the registry's store)",
        ),
    ] = None,
    cv: Annotated[
        int | None, typer.Option("--cv", min=2, help="K-fold cross-validation, then a refit on every patient")
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="repeats of the K-fold cross-validation")] = 1,
    split: Annotated[
        bool, typer.Option("--split", help="train on the ingest's train/val/test split, even for a small cohort")
    ] = False,
) -> None:
    """Train the late-fusion model (Lightning), calibrate it on validation and fit the XGBoost baseline.

    Cohorts under 1,000 patients are cross-validated (5 folds) unless --split is given."""
    from clinfuse.pipelines.training.cross_validation import SMALL_COHORT, train_cv
    from clinfuse.pipelines.training.table_branches import check_table_encoder
    from clinfuse.pipelines.training.train import TrainSettings, resolve_precision, train
    from clinfuse.platform.cache import FeatureCache

    settings = TrainSettings(
        max_epochs=max_epochs, accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
        precision=precision, seed=seed, batch_size=batch_size, patience=patience, branch_patience=branch_patience,
        screening_fdr=screening_fdr or None, encoders=_encoder_choices(encoder or [], image_encoder),
        table_encoder=table_encoder,
        num_workers=num_workers,
        mlflow_tracking_uri=mlflow_uri,
    )  # fmt: skip
    if cv is not None and split:
        raise ClinFuseError("--cv and --split ask for two different evaluations", "give one of them")
    resolve_precision(precision, accelerator)  # a typo fails here, not after the cohort is loaded
    check_table_encoder(table_encoder)  # before a cross-validation is announced or any fold trained
    patients = len(FeatureCache(cache).cohort)
    if cv is None and not split and patients < SMALL_COHORT:
        cv = 5
        typer.echo(f"{patients} patients: a 15% test split would hold about {round(patients * 0.15)}, so training "
                   f"5-fold cross-validation (x{repeats}) and then refitting on every patient; --split keeps the "
                   "ingest's split")  # fmt: skip
    if cv is not None and (strategy.startswith("ddp") or num_nodes > 1):
        raise ClinFuseError(
            "cross-validation trains its folds in one process; it cannot run distributed "
            f"(--strategy {strategy}{', --num-nodes ' + str(num_nodes) if num_nodes > 1 else ''})",
            "train distributed with --split (the ingest's train/val/test split), or cross-validate without --strategy",
        )
    run = train(cache, out, settings) if cv is None else train_cv(cache, out, settings, folds=cv, repeats=repeats)
    typer.echo(f"run written to {run}; next: clinfuse evaluate {run}")


def _encoder_choices(options: list[str], image_encoder: str | None) -> dict[str, str]:
    """--encoder NAME=ARCH options as a mapping (checked against the cache's modalities when training starts)."""
    choices = {"dicom": image_encoder} if image_encoder else {}
    for option in options:
        name, _, architecture = option.partition("=")
        if not name or not architecture:
            raise ClinFuseError(f"--encoder {option!r} is not NAME=ARCHITECTURE", "e.g. --encoder imaging=densenet121")
        choices[name] = architecture
    return choices


@app.command("evaluate")
def evaluate_command(
    run: Annotated[Path, typer.Argument(help="run folder written by `clinfuse train`")],
    resamples: Annotated[int, typer.Option("--resamples", min=100, help="bootstrap resamples")] = 1000,
    thresholds: Annotated[
        str | None,
        typer.Option("--thresholds", help="risk thresholds of the operating points, comma-separated [0.1,0.2,0.3,0.5]"),
    ] = None,
    target_sensitivity: Annotated[
        str | None,
        typer.Option(
            "--target-sensitivity",
            help="operating points at these sensitivities, thresholds found on validation [0.8,0.9]",
        ),
    ] = None,
) -> None:
    """Evaluate a run on its test split: metrics with bootstrap CIs, operating points, calibration slope and
    intercept, decision curve (metrics.json, report.md, calibration.png, roc_pr.png, decision_curve.png)."""
    from clinfuse.pipelines.evaluation.clinical_figures import parse_fractions
    from clinfuse.pipelines.evaluation.evaluate import evaluate

    options = {}
    if thresholds is not None:
        options["thresholds"] = parse_fractions(thresholds, "--thresholds")
    if target_sensitivity is not None:
        options["target_sensitivities"] = parse_fractions(target_sensitivity, "--target-sensitivity")
    result = evaluate(run, resamples=resamples, **options)
    fusion, xgb = result["fusion"], result["xgboost"]
    typer.echo(
        f"{result['evaluated_on']} n={result['n_test']}: fusion AUROC {fusion['auroc']:.3f} "
        f"[{fusion['auroc_ci'][0]:.3f}, {fusion['auroc_ci'][1]:.3f}], ECE {fusion['ece']:.3f}; "
        f"XGBoost AUROC {xgb['auroc']:.3f}; report {run / 'report.md'}"
    )


@app.command("explain")
def explain_command(
    run: Annotated[Path, typer.Option("--run", help="run folder written by `clinfuse train`")],
    patient: Annotated[str, typer.Option("--patient", help="patient pseudonym (or source id, with the key)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the explanation as JSON")] = False,
    top_k: Annotated[int, typer.Option("--top", min=1, help="features per modality")] = 10,
) -> None:
    """Explain one patient's risk: exact modality Shapley values, then what mattered inside each modality."""
    import json

    from clinfuse.pipelines.explain import RunExplainer

    explanation = RunExplainer(run, top_k=top_k).explain(patient)
    if as_json:
        typer.echo(json.dumps(explanation.to_json(), indent=1))
        return
    shapley = explanation.modality
    typer.echo(f"patient {explanation.patient}: risk {explanation.risk:.3f} (uncalibrated {explanation.risk_raw:.3f})")
    typer.echo(f"  base risk {shapley.probability_base:.3f} (every modality masked)")
    for name, value in sorted(shapley.probability_values.items(), key=lambda kv: -abs(kv[1])):
        typer.echo(f"  {name:<12} {value:+.3f} risk  ({shapley.logit_values[name]:+.3f} logit)")
    for name in shapley.absent:
        typer.echo(f"  {name:<12} absent")
    if explanation.xgboost:
        xgb = explanation.xgboost
        values = ", ".join(f"{m} {v:+.3f}" for m, v in xgb["logit_values"].items() if m not in xgb["absent"])
        typer.echo(f"  XGBoost baseline: risk {xgb['probability']:.3f}; TreeSHAP per modality (logit): {values}")
    for name, entry in explanation.within.items():
        if entry["top"]:
            tops = ", ".join(f"{t['name']} {t['value']:+.3f}" for t in entry["top"][:5])
            typer.echo(f"  inside {name}: {tops}")
        if entry.get("heatmap"):
            typer.echo(f"  inside {name}: heatmap {run / entry['heatmap']}")


# `clinfuse dashboard` and `clinfuse users` (the module imports only typer; streamlit loads when the server starts).
from clinfuse.dashboards.cli import register as _register_dashboard  # noqa: E402

_register_dashboard(app)


@app.command("score")
def score_command(
    model: Annotated[str, typer.Option("--model", help="registered model, e.g. models:/NAME@production")],
    config: Annotated[Path, typer.Option("--config", help="cohort.yaml of the patients to score (no labels needed)")],
    out: Annotated[Path, typer.Option("--out", help="scores Parquet file (work files go to OUT.work/)")],
    explain: Annotated[bool, typer.Option("--explain", help="add exact modality Shapley contributions")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="local worker processes (a Dask LocalCluster), "
                                         "started only when the measured work outlasts their start-up")] = 1,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="existing Dask scheduler, e.g. tcp://host:8786")
    ] = None,
    chunk_size: Annotated[int, typer.Option("--chunk-size", min=1, help="patients per resumable chunk")] = 100,
    fhir: Annotated[
        Path | None, typer.Option("--fhir", help="also write one FHIR R4 RiskAssessment per patient (NDJSON)")
    ] = None,
    fhir_server: Annotated[
        str | None, typer.Option("--fhir-server", help="also POST the RiskAssessments to this FHIR base URL")
    ] = None,
    pseudonym_key: Annotated[
        Path | None,
        typer.Option("--pseudonym-key", help="key file: FHIR subjects become Patient/<source id> of --config's table"),
    ] = None,
) -> None:
    """Score a cohort with a registered model: frozen ingest, chunks on Dask, resumable after a crash."""
    from clinfuse.pipelines.scoring.job import score

    if pseudonym_key is not None and fhir is None and fhir_server is None:
        raise ClinFuseError("--pseudonym-key only names the subjects of FHIR output", "add --fhir or --fhir-server")
    key = _read_key(pseudonym_key)  # a bad key file or server URL fails before the scoring, not after it
    if fhir_server is not None:
        from clinfuse.pipelines.interop.fhir_transaction import check_base_url

        check_base_url(fhir_server)
    summary = score(model, config, out, explain=explain, workers=workers, scheduler=scheduler, chunk_size=chunk_size)
    reused = f" ({summary.chunks_reused} finished chunk(s) resumed)" if summary.chunks_reused else ""
    typer.echo(f"scored {summary.scored} of {summary.patients} patients ({summary.errors} error rows){reused}; "
               f"wrote {out}")  # fmt: skip
    if fhir is not None or fhir_server is not None:
        _export_fhir(out, fhir, fhir_server, key, config)


@app.command("fhir")
def fhir_command(
    scores: Annotated[Path, typer.Option("--scores", help="scores Parquet file written by `clinfuse score`")],
    out: Annotated[Path, typer.Option("--out", help="NDJSON file: one FHIR R4 RiskAssessment per patient")],
    fhir_server: Annotated[
        str | None, typer.Option("--fhir-server", help="also POST them to this FHIR base URL as one transaction")
    ] = None,
    pseudonym_key: Annotated[
        Path | None,
        typer.Option("--pseudonym-key", help="key file: subjects become Patient/<source id> (needs --config)"),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="cohort.yaml the scores were made from (with --pseudonym-key)")
    ] = None,
) -> None:
    """Export a scores file as FHIR R4 RiskAssessments (docs/fhir.md); subjects are pseudonyms unless the key is
    given."""
    if (pseudonym_key is None) != (config is None):
        raise ClinFuseError("--pseudonym-key and --config go together: the key re-identifies the ids of the "
                            "cohort table", "give both, or neither to keep pseudonyms as subjects")  # fmt: skip
    _export_fhir(scores, out, fhir_server, _read_key(pseudonym_key), config)


def _read_key(path: Path | None) -> bytes | None:
    from clinfuse.pipelines.interop.fhir_risk import read_pseudonym_key

    return None if path is None else read_pseudonym_key(path)


def _export_fhir(scores: Path, out: Path | None, server: str | None, key: bytes | None, config: Path | None) -> None:
    """RiskAssessments of a scores file: written to `out` and/or posted to `server` (counts only: no ids)."""
    from clinfuse.pipelines.interop.fhir_risk import risk_assessments, source_ids, write_ndjson
    from clinfuse.pipelines.interop.fhir_transaction import post_transaction
    from clinfuse.pipelines.scoring.results import ScoreResults

    results = ScoreResults.open(scores)
    subjects = source_ids(results, config, key) if key is not None else None
    resources = risk_assessments(results, subjects)
    kind = "Patient/<source id>" if resources and resources[0].subject.reference else "pseudonym identifiers"
    if out is not None:
        write_ndjson(resources, out)
        typer.echo(f"wrote {len(resources)} FHIR RiskAssessments ({kind} as subjects) to {out}")
    if server is not None:
        result = post_transaction(server, resources)
        others = ", ".join(f"{n} answered {s}" for s, n in sorted(result.statuses.items()) if s != "201")
        typer.echo(f"posted {result.posted} RiskAssessments to {server} as one transaction: {result.created} created"
                   f"{f', {others}' if others else ''}")  # fmt: skip


# Caches, runs, bundles and scores hold patient data: nothing the command writes is readable by other users.
# The group keeps read access so that services of one deployment (run as one group) can share the volumes.
OUTPUT_UMASK = 0o027


def main() -> None:
    """Entry point: user mistakes become one `error:` line on stderr and exit code 2, never a traceback."""
    os.umask(OUTPUT_UMASK)
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
