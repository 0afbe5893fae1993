"""The model registry: MLflow's tracking server and model registry (a sqlite store under CLINFUSE_HOME by
default, the server named by MLFLOW_TRACKING_URI when set), holding verified ClinFuse bundles."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from clinfuse.pipelines.registry.bundle import MODEL_CARD_FILE, PROVENANCE_FILE, build_bundle
from clinfuse.pipelines.registry.model_folder import open_model
from clinfuse.pipelines.training import run_files
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.file_lock import exclusive
from clinfuse.platform.security import clinfuse_home

EXPERIMENT = "clinfuse"
ARTIFACT_PATH = "bundle"  # the bundle's folder name, also inside the MLflow model (artifacts/bundle)
MODELS_PATH = "registered-models"  # in the run's artifacts: one MLflow model per registered name
MANIFEST_TAG = "clinfuse.manifest_sha256"
HISTORY_TAG = "clinfuse.alias_history.{alias}"
_REF = re.compile(r"^(?:models:/)?(?P<name>[A-Za-z0-9_.-]+)(?:(?:/|:)(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))?$")


# MLflow retries an unreachable server with backoff for about four minutes: opening the store asks it once, briefly.
_FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


@contextmanager
def _asked_once() -> Iterator[None]:
    """MLflow's HTTP settings for one quick question, unless the user set them."""
    saved = {name: os.environ.get(name) for name in _FAIL_FAST}
    os.environ.update({name: value for name, value in _FAIL_FAST.items() if saved[name] is None})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


@dataclass(frozen=True)
class ResolvedModel:
    """A registered version, downloaded and verified: `path` is its bundle folder."""

    name: str
    version: int
    aliases: tuple[str, ...]
    path: Path
    manifest_sha256: str


def _local_store(home: Path) -> str:
    """The sqlite store under CLINFUSE_HOME, created whole: MLflow's schema migrations run on a staged file that
    is renamed into place, so a command killed while creating it leaves no half-migrated database behind."""
    from mlflow import MlflowClient

    database = home / "mlflow.db"
    if not database.exists():
        with exclusive(home / ".mlflow.db.lock"):
            for leftover in home.glob(".mlflow.db.partial-*"):  # of a killed creator: the lock is ours now
                leftover.unlink()
            if not database.exists():
                staged = home / f".mlflow.db.partial-{uuid.uuid4().hex[:8]}"
                MlflowClient(f"sqlite:///{staged}").search_experiments(max_results=1)
                staged.rename(database)
    return f"sqlite:///{database}"


class ModelRegistry:
    def __init__(self, tracking_uri: str | None = None) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        for logger in ("mlflow", "alembic"):
            logging.getLogger(logger).setLevel(logging.WARNING)
        from mlflow import MlflowClient  # heavy import, kept out of training and scoring workers

        home = clinfuse_home()
        self.local = not (tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or _local_store(home)
        self.client = MlflowClient(self.tracking_uri)
        try:
            with _asked_once():
                self.client.search_experiments(max_results=1)
        except Exception as exc:  # any driver or server error means the same to the user: the store is unusable
            raise ClinFuseError(f"cannot open the model registry at {self.tracking_uri} ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:120]})", "check MLFLOW_TRACKING_URI and the server, or "
                                "restore the registry's database from backup") from None  # fmt: skip
        self.downloads = home / "models"

    # -- writing -------------------------------------------------------------------------------------------
    def register(self, run: Path, name: str, alias: str | None = None) -> int:
        """Register an evaluated run as a new version of `name`: an MLflow model (python_function flavor, the
        verified bundle as its artifact) logged into the run's MLflow training run, so version -> run -> data is
        one chain in the MLflow UI; the model card is the version's description."""
        from clinfuse.pipelines.serving.mlflow_model import save_mlflow_model

        with tempfile.TemporaryDirectory(prefix="clinfuse-bundle-") as scratch:
            bundle = build_bundle(run, Path(scratch) / ARTIFACT_PATH)
            run_id = self._training_run(run, bundle.provenance)
            if not self.client.search_registered_models(filter_string=f"name = '{name}'"):
                self.client.create_registered_model(name, description="ClinFuse late-fusion risk model")
            metrics = json.loads((run / run_files.METRICS).read_text())
            tags = {
                MANIFEST_TAG: bundle.manifest_sha256,
                "clinfuse.git_commit": bundle.provenance["git_commit"],
                "clinfuse.cohort_config_hash": bundle.provenance["cohort_config_hash"],
                "clinfuse.cohort_name": str(bundle.provenance["cohort_name"]),
                "clinfuse.test_auroc": f"{metrics['fusion']['auroc']:.4f}",
            }
            # a run may be registered more than once (another name, a re-registration): each gets its own folder
            path = f"{MODELS_PATH}/{name}-{uuid.uuid4().hex[:8]}"
            artifact_uri = self.client.get_run(run_id).info.artifact_uri
            # The version number is the model's own answer column, so the version is created first and its files
            # logged right after; a failure in between removes the version again.
            created = self.client.create_model_version(
                name, source=f"{artifact_uri}/{path}", run_id=run_id, tags=tags,
                description=(bundle.path / MODEL_CARD_FILE).read_text(),
            )  # fmt: skip
            version = int(created.version)
            try:
                model = Path(scratch) / "mlflow-model"
                save_mlflow_model(bundle.path, bundle.manifest_sha256, name, version, model)
                self.client.log_artifacts(run_id, str(model), path)
            except BaseException:
                self.client.delete_model_version(name, str(version))
                raise
        if alias:
            self.promote(name, version, alias)
        return version

    def _training_run(self, run: Path, provenance: dict) -> str:
        """The MLflow run `clinfuse train` logged this run to, when it is in this registry's store; else a new run
        holding what a training run would (settings, test metrics, evaluation files)."""
        from mlflow.exceptions import MlflowException

        logged = json.loads((run / run_files.RUN_INFO).read_text()).get("mlflow") or {}
        if logged.get("run_id") and logged.get("tracking_uri") == self.tracking_uri:
            try:
                self.client.get_run(logged["run_id"])
                return logged["run_id"]
            except MlflowException:
                pass  # deleted since, or another store of the same name: a new run keeps the lineage honest
        run_id = self.client.create_run(self.experiment_id(), run_name=run.name).info.run_id
        metrics = json.loads((run / run_files.METRICS).read_text())
        for model in ("fusion", "xgboost"):
            for key in ("auroc", "auprc", "brier", "ece"):
                self.client.log_metric(run_id, f"{model}_{key}", metrics[model][key])
        for key, value in provenance["settings"].items():
            self.client.log_param(run_id, key, value)
        for name in (run_files.METRICS, run_files.REPORT):
            self.client.log_artifact(run_id, str(run / name), "evaluation")
        self.client.set_terminated(run_id)
        return run_id

    def promote(self, name: str, version: int, alias: str) -> None:
        """Point `alias` at `version`, remembering the previous holder so `rollback` can restore it."""
        self._version(name, version)
        history = self._history(name, alias)
        current = self._alias_version(name, alias)
        if current == version:
            return
        if current is not None and (not history or history[-1] != current):
            history.append(current)  # promoted outside ClinFuse: keep it restorable
        history.append(version)
        self.client.set_registered_model_alias(name, alias, str(version))
        self.client.set_registered_model_tag(name, HISTORY_TAG.format(alias=alias), json.dumps(history))

    def rollback(self, name: str, alias: str = "production") -> tuple[int, int]:
        """Move `alias` back to the version it pointed at before the last promotion; returns (from, to)."""
        history = self._history(name, alias)
        current = self._alias_version(name, alias)
        if current is None:
            raise ClinFuseError(f"model '{name}' has no alias '{alias}'", "promote a version first: see `models list`")
        if len(history) < 2:
            raise ClinFuseError(
                f"alias '{alias}' of '{name}' has no earlier version to roll back to",
                f"promote a version explicitly: clinfuse models promote {name} VERSION --alias {alias}",
            )
        history.pop()
        previous = history[-1]
        self.client.set_registered_model_alias(name, alias, str(previous))
        self.client.set_registered_model_tag(name, HISTORY_TAG.format(alias=alias), json.dumps(history))
        return current, previous

    # -- reading -------------------------------------------------------------------------------------------
    def models(self) -> list[dict]:
        """Every registered model with its versions (number, aliases, test AUROC, commit, created)."""
        out = []
        for model in self.client.search_registered_models():
            versions = sorted(self.client.search_model_versions(f"name = '{model.name}'"), key=lambda v: int(v.version))
            described = [self._describe(model.name, v) for v in versions]
            for entry in described:  # version search results carry no aliases; the registered model does
                entry["aliases"] = sorted(a for a, v in model.aliases.items() if int(v) == entry["version"])
            out.append({"name": model.name, "versions": described})
        return out

    def show(self, ref: str) -> dict:
        """One version's registry entry and model card (`NAME` alone means its latest version)."""
        name, version = self._parse(ref, default_latest=True)
        entry = self._describe(name, self._version(name, version))
        resolved = self.resolve(f"{name}/{version}")
        entry["model_card"] = (resolved.path / "model_card.md").read_text()
        entry["provenance"] = json.loads((resolved.path / PROVENANCE_FILE).read_text())
        return entry

    def resolve(self, ref: str) -> ResolvedModel:
        """Download (once) and verify a version's bundle; `ref` is models:/NAME@ALIAS, models:/NAME/VERSION,
        NAME@ALIAS or NAME:VERSION."""
        name, version = self._parse(ref, default_latest=False)
        entry = self._version(name, version)
        expected = entry.tags.get(MANIFEST_TAG)
        if not expected:
            raise ClinFuseError(f"{name} version {version} was not registered by ClinFuse", "register it again")
        target = self.downloads / name / str(version)
        if target.exists():
            try:
                return self._resolved(name, version, entry, target, expected)
            except ClinFuseError:
                shutil.rmtree(target, ignore_errors=True)  # a damaged local copy: fetched again from the store
        self._download(_bundle_uri(entry.source), target, expected)
        return self._resolved(name, version, entry, target, expected)

    # -- helpers -------------------------------------------------------------------------------------------
    @staticmethod
    def _resolved(name: str, version: int, entry, target: Path, expected: str) -> ResolvedModel:
        verified = open_model(target, expected)
        return ResolvedModel(name, version, tuple(entry.aliases), target, verified.manifest_sha256)

    def _download(self, source: str, target: Path, expected: str) -> None:
        """Fetch a bundle into a staging folder, verify it there, and only then move it into place."""
        import mlflow
        from mlflow.exceptions import MlflowException

        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{target.name}.download-{uuid.uuid4().hex[:8]}"
        try:
            try:
                fetched = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging),
                                                                   tracking_uri=self.tracking_uri))  # fmt: skip
            except (MlflowException, OSError) as exc:
                raise ClinFuseError(f"cannot fetch the model bundle from the registry's artifact store ({source}: "
                                    f"{type(exc).__name__})", "check the artifact store, or re-register the model "
                                    "from its training run") from None  # fmt: skip
            open_model(fetched, expected)
            try:
                fetched.rename(target)
            except OSError:
                if not target.exists():  # else another process put the same verified bundle there first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _parse(self, ref: str, default_latest: bool) -> tuple[str, int]:
        match = _REF.match(ref.strip())
        if not match:
            raise ClinFuseError(
                f"cannot read model reference '{ref}'", "use models:/NAME@ALIAS or models:/NAME/VERSION"
            )
        name = match["name"]
        if match["version"]:
            return name, int(match["version"])
        if match["alias"]:
            version = self._alias_version(name, match["alias"])
            if version is None:
                raise ClinFuseError(f"model '{name}' has no alias '{match['alias']}'",
                                    f"promote a version: clinfuse models promote {name} VERSION "
                                    f"--alias {match['alias']}")  # fmt: skip
            return name, version
        if not default_latest:
            raise ClinFuseError(f"model reference '{ref}' names no version or alias",
                                f"use models:/{name}@production or models:/{name}/VERSION")  # fmt: skip
        versions = self.client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise ClinFuseError(f"no registered model '{name}'", "see `clinfuse models list`")
        return name, max(int(v.version) for v in versions)

    def _version(self, name: str, version: int):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(name, str(version))
        except MlflowException:
            raise ClinFuseError(f"no version {version} of model '{name}'", "see `clinfuse models list`") from None

    def _alias_version(self, name: str, alias: str) -> int | None:
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def _history(self, name: str, alias: str) -> list[int]:
        from mlflow.exceptions import MlflowException

        try:
            tags = self.client.get_registered_model(name).tags
        except MlflowException:
            raise ClinFuseError(f"no registered model '{name}'", "see `clinfuse models list`") from None
        return json.loads(tags.get(HISTORY_TAG.format(alias=alias), "[]"))

    def _describe(self, name: str, version) -> dict:
        return {
            "name": name,
            "version": int(version.version),
            "aliases": list(version.aliases),
            "created": version.creation_timestamp,
            "test_auroc": version.tags.get("clinfuse.test_auroc"),
            "git_commit": version.tags.get("clinfuse.git_commit"),
            "cohort_config_hash": version.tags.get("clinfuse.cohort_config_hash"),
            "run_id": version.run_id,
        }

    def experiment_id(self) -> str:
        """The id of the `clinfuse` experiment (created on first use) that training and registration runs live in."""
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        location = (clinfuse_home() / "mlartifacts").as_uri() if self.local else None
        return self.client.create_experiment(EXPERIMENT, artifact_location=location)


def _bundle_uri(source: str) -> str:
    """Where a version's bundle lies: inside its MLflow model, or (versions registered before the pyfunc
    flavor) the source itself."""
    return source if source.endswith(f"/{ARTIFACT_PATH}") else f"{source}/artifacts/{ARTIFACT_PATH}"
