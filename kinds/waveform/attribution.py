"""Attributions inside a waveform modality: integrated gradients (captum) over the (leads, samples) signal on
the branch logit, from a flat-line baseline (zeros: no electrical activity, which is also what a filtered ECG
returns to between beats). The heatmap is the signed attribution scaled to [-1, 1]; `top` ranks lead x time
windows by the absolute sum of attribution inside them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from clinfuse.models.explain.within_modality import Attribution, AttributionContext, BranchLogit
from clinfuse.models.fusion import ModalityBranch

WINDOW_S = 0.2  # width of the ranked lead x time windows
IG_STEPS = 32


@dataclass
class WaveformAttributionContext(AttributionContext):
    """Lead names and the sampling rate, to name the windows."""

    leads: list[str] = field(default_factory=list)
    sampling_rate: int = 100


def waveform_attribution(branch: ModalityBranch, inputs: dict[str, torch.Tensor],
                         context: WaveformAttributionContext) -> Attribution:  # fmt: skip
    from captum.attr import IntegratedGradients

    signal = inputs["signal"].float()
    logit = BranchLogit(branch, "signal", {k: v for k, v in inputs.items() if k != "signal"})
    values = IntegratedGradients(logit).attribute(signal, baselines=torch.zeros_like(signal), target=0,
                                                  n_steps=IG_STEPS, internal_batch_size=IG_STEPS)  # fmt: skip
    heat = values[0].detach().numpy().astype(np.float64)
    peak = np.abs(heat).max()
    heatmap = (heat / peak if peak > 0 else heat).astype(np.float32)
    return Attribution("waveform", top=_top_windows(heat, context), heatmap=heatmap,
                       detail={"sampling_rate": context.sampling_rate, "leads": list(context.leads),
                               "window_s": WINDOW_S})  # fmt: skip


def _top_windows(heat: np.ndarray, context: WaveformAttributionContext) -> list[dict]:
    """Lead x time windows ranked by |summed attribution|, named like 'V2 0.40-0.60 s'."""
    rate = context.sampling_rate
    width = max(1, round(WINDOW_S * rate))
    windows = heat.shape[1] // width
    sums = heat[:, : windows * width].reshape(heat.shape[0], windows, width).sum(axis=2)
    order = np.argsort(-np.abs(sums), axis=None)[: context.top_k]
    top = []
    for flat in order:
        lead, window = divmod(int(flat), windows)
        start, end = window * width / rate, (window + 1) * width / rate
        name = context.leads[lead] if lead < len(context.leads) else f"lead {lead}"
        top.append({"name": f"{name} {start:.2f}-{end:.2f} s", "value": float(sums[lead, window]), "lead": name,
                    "start_s": start, "end_s": end})  # fmt: skip
    return top
