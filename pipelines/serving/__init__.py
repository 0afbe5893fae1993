"""Online scoring: a registered model as a standard MLflow pyfunc model (`mlflow models serve`, Spark, DataFrames)."""
