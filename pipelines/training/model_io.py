"""Build a fusion model from its spec, and save/load its weights as safetensors (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path

from clinfuse.models.encoders import EncoderSpec, build_encoder
from clinfuse.models.fusion import LateFusionModel
from clinfuse.pipelines.training.run_files import MODEL_SPEC, MODEL_WEIGHTS
from clinfuse.platform.errors import ClinFuseError
from safetensors.torch import load_file, save_file

# Buffers added after models were first saved, whose initial values reproduce how older models behaved: the
# head's modality weights (1: branches summed), its logit centres (0: uncentred), its interaction weight (1: the
# interaction MLP as trained) and the table encoders' feature masks (1: every feature used).
_LATER_BUFFERS = ("head.modality_weight", "head.logit_center", "head.interaction_weight", ".feature_mask")


def build_model(specs: dict[str, EncoderSpec], embed_dim: int) -> LateFusionModel:
    """Encoders built per spec and injected into the fusion model, in the config's modality order."""
    return LateFusionModel({name: build_encoder(spec) for name, spec in specs.items()}, embed_dim)


def save_model(model: LateFusionModel, specs: dict[str, EncoderSpec], embed_dim: int, run: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, run / MODEL_WEIGHTS)
    spec = {"embed_dim": embed_dim, "modalities": {name: s.to_json() for name, s in specs.items()}}
    (run / MODEL_SPEC).write_text(json.dumps(spec, indent=1))


def load_model(run: Path) -> LateFusionModel:
    spec = json.loads((run / MODEL_SPEC).read_text())
    specs = {name: EncoderSpec.from_json(s) for name, s in spec["modalities"].items()}
    model = build_model(specs, spec["embed_dim"])
    state = load_file(run / MODEL_WEIGHTS)
    # Files saved before a buffer in _LATER_BUFFERS existed load with its initial value; every other key must
    # match exactly.
    for key, initial in model.state_dict().items():
        if key.endswith(_LATER_BUFFERS):
            state.setdefault(key, initial.clone())
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # torch lists every missing, unexpected and mis-shaped key
        raise ClinFuseError(
            f"the weights in {run / MODEL_WEIGHTS} do not fit the model this ClinFuse version builds from "
            f"{MODEL_SPEC}: {' '.join(str(error).split())}",
            "the file comes from another architecture or is incomplete: retrain with `clinfuse train`, or load "
            "it with the ClinFuse version that trained it",
        ) from None
    return model.eval()
