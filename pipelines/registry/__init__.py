"""Model registry on MLflow: bundle a trained run, register it, promote/roll back aliases, load it verified.

Modules: bundle.py (what a version holds), manifest.py (sha256 verification), model_card.py, store.py
(ModelRegistry on MLflow), cli.py (`clinfuse models ...`).
"""
