"""The one door to a trained model on disk: a training run folder or a registered bundle, verified file by file.

Every consumer (evaluate, register, explain, score and its workers, the dashboard) opens a model through
`open_model`, so none can read weights, calibration or metrics that do not belong together. A run folder is
sealed by `clinfuse train` (and resealed by `clinfuse evaluate`, which adds its results); a bundle is sealed when
it is registered, and its manifest's own digest is held by the registry (and copied into every scores file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from clinfuse.pipelines.registry.manifest import MANIFEST_FILE, sha256_file, verify_manifest, write_manifest
from clinfuse.pipelines.training import run_files
from clinfuse.platform.errors import ClinFuseError

BUNDLE_MARKER = "provenance.json"  # only a registered bundle has it
# Working files of a run, not part of the model: left out of its manifest.
RUN_UNSEALED = ("logs", "checkpoints", run_files.EXPLANATIONS)
RUN_REQUIRED = (run_files.RUN_INFO, run_files.MODEL_WEIGHTS, run_files.MODEL_SPEC, run_files.CALIBRATION,
                run_files.XGBOOST_MODEL, run_files.PREDICTIONS, run_files.EXPLAIN_BACKGROUND)  # fmt: skip
EVALUATION_FILES = (run_files.METRICS, run_files.REPORT, run_files.CALIBRATION_PLOT, run_files.ROC_PR_PLOT,
                    run_files.DECISION_CURVE_PLOT)  # fmt: skip


@dataclass(frozen=True)
class ModelFolder:
    path: Path
    kind: Literal["run", "bundle"]
    manifest_sha256: str
    files: dict[str, str]  # relative path -> sha256, as verified

    @property
    def evaluated(self) -> bool:
        return run_files.METRICS in self.files


def open_model(path: Path, expected_manifest_sha256: str | None = None, skip: tuple[str, ...] = ()) -> ModelFolder:
    """Verify and describe the model folder at `path`; `expected_manifest_sha256` pins a bundle to its
    registration. `skip`: listed files a caller is about to rewrite (evaluate skips its own results)."""
    path = Path(path)
    if not path.is_dir() or not ((path / MANIFEST_FILE).is_file() or (path / run_files.MODEL_WEIGHTS).is_file()):
        raise ClinFuseError(f"{path} holds no trained model",
                            "pass the --out folder of `clinfuse train` or a registered model")  # fmt: skip
    if (path / BUNDLE_MARKER).is_file():
        listed = verify_manifest(path, "model bundle", _bundle_fix, expected_manifest_sha256, skip=skip)
        kind = "bundle"
    else:
        listed = verify_manifest(path, "training run", _run_fix(path), expected_manifest_sha256,
                                 unsealed=RUN_UNSEALED, skip=skip)  # fmt: skip
        if missing := [name for name in RUN_REQUIRED if name not in listed]:
            raise ClinFuseError(f"training run {path} lacks {missing}", _run_fix(path)(missing[0]))
        kind = "run"
    return ModelFolder(path, kind, sha256_file(path / MANIFEST_FILE), dict(listed))


def seal_run(run: Path) -> str:
    """Write a run folder's manifest (after training, and again after evaluation adds its results)."""
    return write_manifest(run, unsealed=RUN_UNSEALED)


def _bundle_fix(relative: str) -> str:  # noqa: ARG001 (one fix whatever the file)
    return "re-register the model from its training run, or restore the registry's artifact store from backup"


def _run_fix(run: Path):
    def fix(relative: str) -> str:
        if relative in EVALUATION_FILES:
            return f"run `clinfuse evaluate {run}` again"
        return f"retrain it: clinfuse train --out {run}"

    return fix
