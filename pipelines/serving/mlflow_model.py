"""Write a verified ClinFuse bundle as an MLflow model folder (MLmodel, python_function flavor) ready to log.

The bundle travels whole as the model's `bundle` artifact; the model config pins it to its manifest digest and
names the registered version, so every loader verifies what it serves and answers with the version it is.
"""

from __future__ import annotations

from importlib.metadata import version as package_version
from pathlib import Path

from clinfuse.pipelines.serving import model_code
from clinfuse.pipelines.serving.pyfunc_model import BUNDLE_ARTIFACT, MANIFEST_KEY, NAME_KEY, VERSION_KEY
from clinfuse.pipelines.serving.request import DEMOGRAPHIC_COLUMNS, model_modalities

SCORE_COLUMNS = {
    "patient_id": "string", "risk": "double", "risk_raw": "double", "risk_lower": "double", "risk_upper": "double",
    "risk_xgboost": "double", "modalities_present": "string",
}  # fmt: skip
TRAILING_COLUMNS = {"model_name": "string", "model_version": "long", "scored_at": "string", "warnings": "string",
                    "error": "string"}  # fmt: skip


def answer_columns(modalities: list[str]) -> dict[str, str]:
    """The answer's columns and MLflow types, in order (`clinfuse score --explain`'s, less sex and age, which a
    request only has when it sends them)."""
    contributions = {f"contribution_{name}": "double" for name in [*modalities, "base"]}
    return SCORE_COLUMNS | contributions | TRAILING_COLUMNS


def signature_of(modalities: list[str]):
    """Request: patient_id, index_time (required), sex, age, and one JSON cell per modality (optional: a missing
    modality is allowed). Answer: `clinfuse score --explain`'s columns."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    inputs = [ColSpec("string", "patient_id"), ColSpec("string", "index_time"),
              ColSpec("string", DEMOGRAPHIC_COLUMNS[0], required=False),
              ColSpec("double", DEMOGRAPHIC_COLUMNS[1], required=False)]  # fmt: skip
    inputs += [ColSpec(AnyType(), name, required=False) for name in modalities]
    outputs = [ColSpec(kind, name) for name, kind in answer_columns(modalities).items()]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def input_example(modalities: list[str]):
    """The columns of a request, with no patient's data (the model folder must hold none): every modality sent as
    missing, which the model answers with its error row. docs/serving.md shows a filled request."""
    import pandas as pd

    example = {"patient_id": "example-patient", "index_time": "2150-01-01T08:00:00", "sex": "F", "age": 60.0}
    return pd.DataFrame([example | dict.fromkeys(modalities)])


def save_mlflow_model(bundle: Path, manifest_sha256: str, name: str, version: int, dest: Path) -> None:
    """Write the MLflow model folder `dest` (must not exist) for registered version `version` of `name`."""
    import mlflow.pyfunc

    modalities = list(model_modalities(bundle))
    mlflow.pyfunc.save_model(
        path=str(dest),
        python_model=model_code.__file__,
        artifacts={BUNDLE_ARTIFACT: str(bundle)},
        model_config={MANIFEST_KEY: manifest_sha256, NAME_KEY: name, VERSION_KEY: version},
        signature=signature_of(modalities),
        input_example=input_example(modalities),
        # ClinFuse itself carries every library it needs; pinning it is the one requirement an image must meet
        pip_requirements=[f"clinfuse=={package_version('clinfuse')}"],
    )
