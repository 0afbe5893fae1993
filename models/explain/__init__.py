"""Explanations: exact modality Shapley values and attributions inside each modality."""
