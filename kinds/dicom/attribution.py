"""Attributions inside an image: occlusion sensitivity (MONAI).

A Gaussian hole slides over the image, and each pixel's heat is how far
the branch logit falls when its neighbourhood is hidden (the positive part), at the input resolution.
Measured as the heatmap mass inside the demo cohort's planted finding boxes (8% of the image), on the
same image models (then average + max pooled): integrated gradients from a blurred copy 0.10-0.15,
occlusion 0.32-0.50 (Grad-CAM, earlier, 0.05: its spatially averaged gradients barely see a focal finding
the pooling picks out at one place). Gradients also credit anatomy edges the logit is locally sensitive
to but does not rest on. With today's log-sum-exp pooled CNN occlusion gives 0.67-0.68 (2,000-patient
cohorts of seeds 7, 3 and 21, test split).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from clinfuse.models.explain.within_modality import Attribution, AttributionContext, BranchLogit
from clinfuse.models.fusion import ModalityBranch

OCCLUSION_MASK_SHARE = 1 / 8  # side of the occluding window, as a share of the image side
OCCLUSION_OVERLAP = 0.75  # window overlap: the heatmap's step is a quarter of the window


def image_attribution(
    branch: ModalityBranch, inputs: dict[str, torch.Tensor], context: AttributionContext
) -> Attribution:
    from monai.visualize import OcclusionSensitivity

    image = inputs["image"]
    logit = BranchLogit(branch, "image")
    mask = max(4, round(image.shape[-1] * OCCLUSION_MASK_SHARE))
    occlusion = OcclusionSensitivity(logit, mask_size=mask, n_batch=64, verbose=False, mode="gaussian",
                                     overlap=OCCLUSION_OVERLAP, activate=False)  # fmt: skip
    with torch.no_grad(), warnings.catch_warnings():
        # MONAI 1.6 indexes with lists, which torch flags as deprecated; the result is still the documented one
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)
        occluded, _ = occlusion(image)
        drop = (logit(image)[0, 0] - occluded.reshape(image.shape[2:])).numpy()
    heatmap = np.clip(drop, 0, None)  # where hiding the region lowers the logit: it pushed the risk up
    peak = heatmap.max()
    return Attribution("dicom", top=[], heatmap=(heatmap / peak if peak > 0 else heatmap).astype(np.float32))
