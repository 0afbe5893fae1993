"""Training throughput benchmark: image-encoder images/s through the real pipeline vs. the raw training step.

What one run measures (every figure printed is measured in that run, on this machine):

(a) The real training pipeline: a `LateFusionModule` built exactly as `clinfuse train` builds it (encoder specs
    from `train._encoder_specs`, `model_io.build_model`, channels_last on GPU), fitted by a Lightning Trainer
    (bf16-mixed on GPU, 32-true on CPU; no validation, checkpointing, logging or progress bar) on the train
    loader of `CacheDataModule` with the default worker count (`default_num_workers`). The Trainer runs
    `--warmup + --steps` optimizer steps (`max_steps`; when the train split holds fewer batches than that, it
    cycles over epochs, and epoch boundaries are timed as in real training). A Lightning callback times the
    `--steps` batches after the warm-up, from the end of the last warm-up batch to the end of the last batch
    (CUDA synchronised at both ends), so every timed batch pays for its loading, transfer and step. Images
    counted = imaging-present patients of the timed batches (the image branch runs on exactly those). The
    loader does whatever `CacheDataModule` does by default for training (today: per-image augmentation).
(a') The same train loader alone (same workers, batches moved to the device, no model), for diagnosis: if
    (a) is well below (b) and (a') is close to (a), loading is the bottleneck.
(b) The raw training step on ONE fixed batch already on the device: forward + backward + AdamW step + zero_grad
    of the same kind of module (fresh, same seed and construction), the loss being the module's own
    (`_loss` after modality dropout, as `training_step` computes it), under `torch.autocast(bf16)` on GPU as
    bf16-mixed does; no loading, no Lightning. Also the image branch alone (its encoder + logit, BCE loss,
    AdamW over its parameters) for reference.
(c) The ratio (a)/(b) in images/s; goal >= 0.9 (the pipeline costs at most 10% over the bare step).
(d) bf16 vs fp32 speed-up of the raw whole-model step (GPU only; on CPU only fp32 is run and the comparison
    is reported as skipped).

Run from the repository root on a feature cache written by `clinfuse ingest` (it needs a `dicom` modality):

    .venv/bin/python tests/benchmarks/train_throughput.py --cache CACHE [--accelerator cpu|gpu]
        [--image-encoder small_cnn|densenet121] [--batch-size 64] [--steps 30] [--warmup 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

RATIO_GOAL = 0.9


@dataclass(frozen=True)
class Rate:
    """One measured block: optimizer steps (or batches), images seen, wall seconds."""

    label: str
    precision: str
    steps: int
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def ms_per_step(self) -> float:
        return 1000.0 * self.seconds / self.steps if self.steps else float("nan")

    def to_json(self) -> dict:
        return asdict(self) | {"images_per_s": self.images_per_s, "ms_per_step": self.ms_per_step}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="feature cache written by `clinfuse ingest`")
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--image-encoder", default=None,
                        help="small_cnn, densenet121 or densenet121_3d (default: as `clinfuse train`)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before each measurement")
    parser.add_argument("--num-workers", type=int, default=None, help="loader workers (default: as `clinfuse train`)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1 or args.batch_size < 2:
        parser.error("--steps and --warmup must be >= 1 and --batch-size >= 2")
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _quiet_lightning() -> None:
    """Silence Lightning's advice lines (worker count, disabled validation, tips); keep real errors."""
    import logging

    import pytorch_lightning  # noqa: F401  (its import sets its loggers to INFO; lower them afterwards)

    for pattern in (".*does not have many workers.*", ".*limit_val_batches=0.*", ".*on_after_batch_transfer.*",
                    ".*LeafSpec.*", ".*GPU available but not used.*"):  # fmt: skip
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


class _Setup:
    """Cache, encoder specs and module construction exactly as `clinfuse train` does them."""

    def __init__(self, cache_path: Path, accelerator: str, image_encoder: str | None, seed: int) -> None:
        from clinfuse.pipelines.data import modality_dims
        from clinfuse.pipelines.training.train import _encoder_specs, _resolve_accelerator
        from clinfuse.platform.cache import FeatureCache

        self.cache_path = cache_path
        self.cache = FeatureCache(cache_path)
        self.accelerator = _resolve_accelerator(accelerator)
        self.device = torch.device("cuda" if self.accelerator == "gpu" else "cpu")
        self.specs = _encoder_specs(self.cache, self.accelerator, {"dicom": image_encoder} if image_encoder else {})
        images = [name for name, spec in self.specs.items() if spec.kind == "dicom"]
        if not images:
            sys.exit(f"error: cache {cache_path} has no dicom modality; nothing to benchmark")
        self.image_name = images[0]
        self.image_column = list(self.cache.modalities).index(self.image_name)
        self.image_size = modality_dims(self.cache)[self.image_name]["image_size"]
        self.architecture = self.specs[self.image_name].architecture
        self.seed = seed

    def module(self):  # -> LateFusionModule
        """A fresh module, seeded, as train.py builds it (channels_last on GPU when images are present)."""
        import pytorch_lightning as pl
        from clinfuse.models.lightning import LateFusionModule
        from clinfuse.pipelines.training.model_io import build_model
        from clinfuse.pipelines.training.train import EMBED_DIM, TrainSettings

        pl.seed_everything(self.seed, workers=True, verbose=False)
        model = build_model(self.specs, EMBED_DIM)
        return LateFusionModule(model, learning_rate=TrainSettings().learning_rate,
                                channels_last=self.accelerator == "gpu")  # fmt: skip


def _make_timer(warmup: int, steps: int, column: int, device: torch.device):  # -> Callback
    from pytorch_lightning.callbacks import Callback

    class ThroughputTimer(Callback):
        """Times the `steps` batches after `warmup` from the end of the last warm-up batch to the last batch's end."""

        def __init__(self) -> None:
            self.seen = 0
            self.started = self.finished = None
            self.images = torch.zeros((), dtype=torch.float64, device=device)
            self.epochs = 0

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.epochs += 1

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
            self.seen += 1
            if self.seen == warmup:
                _sync(device)
                self.started = time.perf_counter()
            elif warmup < self.seen <= warmup + steps:
                # stays on the device: no synchronisation inside the timed window
                self.images += batch["present"][:, column].sum()
                if self.seen == warmup + steps:
                    _sync(device)
                    self.finished = time.perf_counter()

    return ThroughputTimer()


def measure_pipeline(setup: _Setup, batch_size: int, workers: int, warmup: int, steps: int) -> tuple[Rate, dict]:
    """(a): Lightning Trainer on CacheDataModule, timed by a callback."""
    import pytorch_lightning as pl
    from clinfuse.pipelines.data_module import CacheDataModule

    module = setup.module()
    data = CacheDataModule(str(setup.cache_path), batch_size=batch_size, num_workers=workers)
    timer = _make_timer(warmup, steps, setup.image_column, setup.device)
    precision = "bf16-mixed" if setup.accelerator == "gpu" else "32-true"
    with tempfile.TemporaryDirectory(prefix="clinfuse-throughput-") as root:
        trainer = pl.Trainer(
            accelerator=setup.accelerator,
            devices=1,
            precision=precision,
            max_epochs=-1,
            max_steps=warmup + steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
            default_root_dir=root,
        )
        trainer.fit(module, datamodule=data)
    if timer.finished is None:
        sys.exit(f"error: the Trainer stopped after {timer.seen} steps, before {warmup + steps}")
    train_patients = len(data.datasets["train"])
    info = {"epochs": timer.epochs, "train_patients": train_patients,
            "batches_per_epoch": len(data.train_dataloader())}  # fmt: skip
    rate = Rate("(a) Lightning pipeline, loaders", precision, steps, int(timer.images.item()),
                timer.finished - timer.started)  # fmt: skip
    return rate, info


def measure_loader(setup: _Setup, batch_size: int, workers: int, warmup: int, steps: int) -> Rate:
    """(a'): the same train loader alone, batches moved to the device (pinned memory as in training)."""
    from clinfuse.pipelines.data_module import CacheDataModule
    from pytorch_lightning.utilities import move_data_to_device

    data = CacheDataModule(str(setup.cache_path), batch_size=batch_size, num_workers=workers)
    data.setup("fit")
    loader = data.train_dataloader()
    seen, images, started = 0, torch.zeros((), dtype=torch.float64, device=setup.device), 0.0
    while seen < warmup + steps:
        for batch in loader:
            batch = move_data_to_device(batch, setup.device)
            seen += 1
            if seen == warmup:
                _sync(setup.device)
                started = time.perf_counter()
            elif seen > warmup:
                images += batch["present"][:, setup.image_column].sum()
                if seen == warmup + steps:
                    break
    _sync(setup.device)
    seconds = time.perf_counter() - started
    return Rate("(a') loader alone, to device", "-", steps, int(images.item()), seconds)


def fixed_batch(setup: _Setup, batch_size: int) -> dict:
    """One shuffled train batch (seeded), on the device, in the memory format the module trains in."""
    from clinfuse.pipelines.data import CacheDataset
    from pytorch_lightning.utilities import move_data_to_device
    from torch.utils.data import DataLoader

    dataset = CacheDataset(setup.cache, "train")
    generator = torch.Generator().manual_seed(setup.seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator, num_workers=0)
    batch = move_data_to_device(next(iter(loader)), setup.device)
    if not batch["present"][:, setup.image_column].any():
        sys.exit("error: the fixed batch holds no imaging patient; use a larger --batch-size")
    return batch


def _timed_loop(step: Callable[[], None], device: torch.device, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - started


def measure_raw(setup: _Setup, batch: dict, bf16: bool, warmup: int, steps: int, branch_only: bool = False) -> Rate:
    """(b): forward + backward + AdamW step on one fixed on-device batch; the whole model or the image branch."""
    from clinfuse.models.lightning import modality_dropout

    module = setup.module().to(setup.device)
    module.train()
    if module.hparams.channels_last:
        module.model.to(memory_format=torch.channels_last)
    batch = module.on_after_batch_transfer(batch, 0)  # channels_last inputs on GPU, as in training
    images_per_step = int(batch["present"][:, setup.image_column].sum().item())
    autocast = torch.autocast(setup.device.type, dtype=torch.bfloat16, enabled=bf16)

    if branch_only:
        branch = module.model.branches[setup.image_name]
        rows = batch["present"][:, setup.image_column].bool()
        inputs = {key: value[rows] for key, value in batch["inputs"][setup.image_name].items()}
        label = batch["label"][rows]
        optimizer = torch.optim.AdamW(branch.parameters(), lr=module.hparams.learning_rate,
                                      weight_decay=module.hparams.weight_decay)  # fmt: skip

        def loss_fn() -> torch.Tensor:
            _, logit = branch(inputs)
            return F.binary_cross_entropy_with_logits(logit.float(), label)

    else:
        optimizer = module.configure_optimizers()

        def loss_fn() -> torch.Tensor:
            mask = modality_dropout(batch["present"], module.hparams.dropout_rate)
            return module._loss(batch, mask)[0]

    def step() -> None:
        with autocast:
            loss = loss_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = _timed_loop(step, setup.device, warmup, steps)
    what = "image branch only" if branch_only else "whole model"
    rate = Rate(f"(b) raw step, {what}, 1 batch", "bf16 autocast" if bf16 else "fp32", steps,
                images_per_step * steps, seconds)  # fmt: skip
    return rate


def _free(device: torch.device) -> None:
    """Release the previous measurement's module, optimizer state and loader workers before the next one."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _table(rates: list[Rate]) -> str:
    header = f"{'measurement':<42} {'precision':<14} {'steps':>5} {'images':>7} {'seconds':>8} {'ms/step':>8} "
    header += f"{'images/s':>9}"
    lines = [header, "-" * len(header)]
    for r in rates:
        lines.append(f"{r.label:<42} {r.precision:<14} {r.steps:>5} {r.images:>7} {r.seconds:>8.3f} "
                     f"{r.ms_per_step:>8.1f} {r.images_per_s:>9.1f}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    _quiet_lightning()
    from clinfuse.pipelines.data import default_num_workers

    setup = _Setup(args.cache, args.accelerator, args.image_encoder, args.seed)
    workers = args.num_workers if args.num_workers is not None else default_num_workers(setup.accelerator)
    gpu = setup.accelerator == "gpu"
    device_name = torch.cuda.get_device_name(setup.device) if gpu else platform.processor() or platform.machine()
    print(f"device: {setup.accelerator} ({device_name}); torch {torch.__version__}, {os.cpu_count()} CPU cores, "
          f"{torch.get_num_threads()} intra-op threads")  # fmt: skip
    print(f"cache: {args.cache} ({len(setup.cache.cohort)} patients), image modality '{setup.image_name}' "
          f"{setup.image_size}x{setup.image_size}, encoder {setup.architecture}")  # fmt: skip
    print(f"batch size {args.batch_size}, loader workers {workers}, warm-up {args.warmup} + timed {args.steps} "
          "steps per measurement")  # fmt: skip
    if gpu:
        print(f"cudnn.benchmark={torch.backends.cudnn.benchmark}, cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
              f"float32_matmul_precision={torch.get_float32_matmul_precision()}")  # fmt: skip
    sys.stdout.flush()

    pipeline, info = measure_pipeline(setup, args.batch_size, workers, args.warmup, args.steps)
    print(f"(a) ran {info['epochs']} epoch(s) of {info['batches_per_epoch']} batch(es) over "
          f"{info['train_patients']} train patients")  # fmt: skip
    _free(setup.device)
    loader = measure_loader(setup, args.batch_size, workers, args.warmup, args.steps)
    _free(setup.device)
    batch = fixed_batch(setup, args.batch_size)
    raw = measure_raw(setup, batch, bf16=gpu, warmup=args.warmup, steps=args.steps)
    _free(setup.device)
    branch = measure_raw(setup, batch, bf16=gpu, warmup=args.warmup, steps=args.steps, branch_only=True)
    _free(setup.device)
    rates = [pipeline, loader, raw, branch]
    raw_fp32 = raw
    if gpu:
        raw_fp32 = measure_raw(setup, batch, bf16=False, warmup=args.warmup, steps=args.steps)
        rates.append(raw_fp32)

    ratio = pipeline.images_per_s / raw.images_per_s
    print()
    print(_table(rates))
    print()
    verdict = "meets" if ratio >= RATIO_GOAL else "BELOW"
    print(f"(c) pipeline / raw step = {pipeline.images_per_s:.1f} / {raw.images_per_s:.1f} images/s = {ratio:.3f} "
          f"({verdict} the goal of >= {RATIO_GOAL})")  # fmt: skip
    speedup = None
    if gpu:
        speedup = raw.images_per_s / raw_fp32.images_per_s
        print(f"(d) bf16 vs fp32 raw whole-model step: {raw.images_per_s:.1f} / {raw_fp32.images_per_s:.1f} "
              f"images/s = {speedup:.2f}x speed-up")  # fmt: skip
    else:
        print(f"(d) bf16 vs fp32: skipped, no GPU (fp32 raw step only: {raw.images_per_s:.1f} images/s)")
    if args.json:
        result = {"accelerator": setup.accelerator, "device": device_name, "torch": torch.__version__,
                  "cache": str(args.cache), "image_size": setup.image_size, "encoder": setup.architecture,
                  "batch_size": args.batch_size, "workers": workers, "warmup": args.warmup, "steps": args.steps,
                  "pipeline_info": info, "rates": [r.to_json() for r in rates], "ratio": ratio,
                  "ratio_goal": RATIO_GOAL, "bf16_speedup": speedup}  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
