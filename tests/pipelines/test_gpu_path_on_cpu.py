"""The GPU training configuration run on CPU: bf16 autocast, channels-last images and the GPU default encoder.

No accelerator runs on every commit, so what only a GPU does by default (`precision: auto` is bf16-mixed there,
`image_channels_last: None` is on there, `densenet121` is the dicom kind's GPU default) is forced on CPU, where
Lightning's bf16-mixed is the same torch.autocast with a CPU device type. A forward hook on every convolution
records what it saw: the dtype autocast gave its output and the memory layout of its weight and input.

2D runs the real `train` with DenseNet121 on a tiny 32-pixel cache. 3D drives the LightningModule directly on an
in-memory batch of volumes with the 3D small CNN: the GPU default for volumes, DenseNet121 in 3D, needs 32 voxels a
side, and a bf16 training step on that costs seconds on CPU (no fast CPU kernel for bf16 3D convolutions;
docs/experiments.md), so tests/benchmarks/gpu_check.sh trains it on the GPU instead.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import yaml
from clinfuse.models.encoders import EncoderSpec
from clinfuse.models.fusion import LateFusionModel
from clinfuse.models.lightning import LateFusionModule
from clinfuse.pipelines.training import run_files, train
from clinfuse.pipelines.training.model_io import build_model, load_model, save_model
from clinfuse.pipelines.training.predict import predict_cohort
from clinfuse.platform.cache import FeatureCache
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader

PATIENTS = 48
IMAGE_SIZE = 32  # the smallest side DenseNet121's five halvings leave a pixel of
VOLUME = (32, 32, 32)
EMBED_DIM = 8


@dataclass(frozen=True)
class Call:
    """One convolution call: which convolution (0: the one reading the batch), in training mode or not, its output
    dtype, and whether its weight and input were channels-last (None: a 1x1 map, the same in both layouts)."""

    index: int
    training: bool
    dtype: torch.dtype
    weight_channels_last: bool | None
    input_channels_last: bool | None


def _channels_last(tensor: torch.Tensor) -> bool | None:
    """Whether the channels are the innermost dimension in memory. Read from the strides, because
    `is_contiguous(memory_format=...)` ignores size-1 dimensions: a one-channel image passes for both layouts."""
    if all(side == 1 for side in tensor.shape[2:]):
        return None
    return tensor.stride(1) == 1


def record_convolutions(model: nn.Module) -> list[Call]:
    """Hook every convolution of `model`, in order; the returned list fills as the model runs."""
    calls: list[Call] = []

    def hook(index: int, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        calls.append(Call(index, module.training, output.dtype, _channels_last(module.weight),
                          _channels_last(inputs[0])))  # fmt: skip

    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv3d)]
    for index, module in enumerate(convolutions):
        module.register_forward_hook(functools.partial(hook, index))
    return calls


def assert_gpu_path_ran(calls: list[Call], inside_too: bool = True) -> None:
    """Every training-mode convolution ran in bf16 on channels-last weights, the first on the channels-last batch
    and (`inside_too`) every later one on channels-last activations."""
    training = [c for c in calls if c.training]
    assert training, "no convolution ran in training mode"
    assert {c.dtype for c in training} == {torch.bfloat16}, "autocast did not run the convolutions in bf16"
    assert {c.weight_channels_last for c in training} - {None} == {True}, "weights not channels-last"
    assert {c.input_channels_last for c in training if c.index == 0} == {True}, "batch not channels-last"
    if inside_too:
        assert {c.input_channels_last for c in training} - {None} == {True}, "activations not channels-last"


@pytest.fixture(scope="module")
def tiny_image_cache(demo_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo cohort's first 48 patients with their chest images only, ingested at 32 pixels."""
    from clinfuse.platform.ingest import ingest

    folder = tmp_path_factory.mktemp("tiny-images")
    demo = yaml.safe_load((demo_cohort / "cohort.yaml").read_text())
    cohort = pd.read_csv(demo_cohort / demo["cohort"]["path"], dtype={"patient_id": str}).head(PATIENTS)
    cohort.to_csv(folder / "cohort.csv", index=False)
    manifest = pd.read_csv(demo_cohort / "imaging_manifest.csv", dtype=str)
    manifest = manifest[manifest["patient_id"].isin(cohort["patient_id"])]
    manifest.assign(path=[str(demo_cohort / p) for p in manifest["path"]]).to_csv(folder / "manifest.csv", index=False)
    config = {"name": "tiny-images", "cohort": demo["cohort"],
              "modalities": [{"name": "imaging", "kind": "dicom", "path": str(demo_cohort / "imaging"),
                              "link": "manifest", "manifest": "manifest.csv", "image_size": IMAGE_SIZE}]}  # fmt: skip
    (folder / "cohort.yaml").write_text(yaml.safe_dump(config))
    ingest(folder / "cohort.yaml", folder / "cache", workers=1)
    return folder / "cache"


def test_densenet121_trains_in_bf16_on_channels_last_images_and_saves_float32(
    tiny_image_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: dict[str, object] = {}

    def build_and_hook(specs: dict[str, EncoderSpec], embed_dim: int) -> LateFusionModel:
        model = build_model(specs, embed_dim)
        built["calls"] = record_convolutions(model)
        built["initial"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return model

    monkeypatch.setattr(train, "build_model", build_and_hook)
    settings = train.TrainSettings(max_epochs=1, accelerator="cpu", precision="bf16-mixed", image_channels_last=True,
                                   encoders={"dicom": "densenet121"}, batch_size=8, seed=0)  # fmt: skip
    run = train.train(tiny_image_cache, tmp_path / "run", settings)

    calls: list[Call] = built["calls"]
    assert_gpu_path_ran(calls)
    # after training, calibration and predictions run the saved model in float32 on the default layout
    after = calls[next(i for i, c in enumerate(calls) if c.training) :]
    evaluated = [c for c in after if not c.training][-10:]
    assert evaluated and {c.dtype for c in evaluated} == {torch.float32}
    assert {c.input_channels_last for c in evaluated} <= {False, None}

    info = json.loads((run / run_files.RUN_INFO).read_text())
    assert info["architectures"] == {"imaging": "densenet121"} and info["settings"]["precision"] == "bf16-mixed"
    saved = load_file(run / run_files.MODEL_WEIGHTS)
    floating = {k: v for k, v in saved.items() if v.is_floating_point()}
    assert {v.dtype for v in floating.values()} == {torch.float32}
    changed = [k for k, v in floating.items() if ".conv" in k and not torch.equal(v, built["initial"][k])]
    assert len(changed) > 100, "training left the DenseNet's convolutions as they were initialised"
    model = load_model(run)
    outputs = predict_cohort(model, FeatureCache(tiny_image_cache))
    stored = pd.read_parquet(run / run_files.PREDICTIONS)
    assert np.isfinite(outputs["fusion_logit"]).all()
    np.testing.assert_allclose(outputs["fusion_logit"], stored["fusion_logit"], atol=1e-4)


def _volume_batches(count: int, generator: torch.Generator) -> list[dict]:
    """Batches as CacheDataModule yields them, of one volume modality `ct`: noise, half with a bright cube."""
    batches = []
    for _ in range(count):
        volumes = 0.3 + 0.05 * torch.randn(4, 1, *VOLUME, generator=generator)
        labels = torch.tensor([0.0, 1.0, 0.0, 1.0])
        volumes[labels == 1, :, 8:16, 8:16, 8:16] += 0.5
        batches.append({"inputs": {"ct": {"image": volumes.clamp(0, 1)}}, "present": torch.ones(4, 1),
                        "label": labels, "index": torch.arange(4)})  # fmt: skip
    return batches


def test_a_3d_encoder_trains_in_bf16_on_channels_last_volumes_and_saves_float32(tmp_path: Path) -> None:
    pl.seed_everything(0)
    dims = {"spatial_dims": 3, "size_x": VOLUME[0], "size_y": VOLUME[1], "size_z": VOLUME[2]}
    specs = {"ct": EncoderSpec(kind="dicom", architecture="small_cnn", embed_dim=EMBED_DIM, dims=dims)}
    model = build_model(specs, EMBED_DIM)
    calls = record_convolutions(model)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    module = LateFusionModule(model, channels_last=True)
    trainer = pl.Trainer(accelerator="cpu", precision="bf16-mixed", max_steps=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
    batches = _volume_batches(2, torch.Generator().manual_seed(0))
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))

    # on CPU, bf16 3D convolutions write the default layout whatever they read: only the batch and the weights,
    # which the LightningModule sets, can be checked here
    assert_gpu_path_ran(calls, inside_too=False)
    # what train() does with the best checkpoint's model before saving it
    trained = module.model.to(memory_format=torch.contiguous_format).float().eval()
    save_model(trained, specs, EMBED_DIM, tmp_path)
    saved = load_file(tmp_path / run_files.MODEL_WEIGHTS)
    assert {v.dtype for v in saved.values() if v.is_floating_point()} == {torch.float32}
    assert any(not torch.equal(saved[k], initial[k]) for k in saved if k.endswith("weight") and saved[k].dim() == 5)
    reloaded = load_model(tmp_path)
    with torch.no_grad():
        _, logits = reloaded.branches["ct"](batches[0]["inputs"]["ct"])
    assert torch.isfinite(logits).all() and logits.dtype == torch.float32
