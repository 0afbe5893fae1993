"""Evaluation of a training run on its test split: metrics.json, report.md, calibration.png."""
