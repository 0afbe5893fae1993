"""Training: the late-fusion model through the Lightning Trainer, calibration and the XGBoost baseline."""
