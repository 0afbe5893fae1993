"""The "model from code" file MLflow copies into every ClinFuse MLflow model and runs to load it: the model folder
then holds no pickled Python object (cloudpickle would run arbitrary code on load), only this file and the bundle."""

import mlflow.models
from clinfuse.pipelines.serving.pyfunc_model import ClinFusePyfuncModel

mlflow.models.set_model(ClinFusePyfuncModel())
