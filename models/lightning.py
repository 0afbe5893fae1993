"""The LightningModule around a LateFusionModel: modality dropout, deep supervision, AUROC on validation."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from clinfuse.models.fusion import LateFusionModel
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC


def modality_dropout(present: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Drop each present modality with probability `rate`, keeping at least one per patient."""
    if rate <= 0:
        return present
    keep = (torch.rand(present.shape, device=present.device, generator=generator) >= rate).to(present.dtype)
    dropped = present * keep
    empty = dropped.sum(dim=1) == 0
    return torch.where(empty.unsqueeze(1), present, dropped)


# Channels-last memory format by tensor rank: images (B, C, H, W) and volumes (B, C, D, H, W). Converted with
# `.to(memory_format=...)`, not `.contiguous(memory_format=...)`: a one-channel image (B, 1, H, W) or 1x1 kernel
# already counts as contiguous in both formats, so `.contiguous` returns it with its default strides; the first
# convolution then writes its output in the default format, and every later layer reads that. `.to` gives such
# tensors channels-last strides.
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


class LateFusionModule(pl.LightningModule):
    """Trains the injected fusion model (encoders are built outside and passed in)."""

    def __init__(self, model: LateFusionModel, learning_rate: float = 1e-3, weight_decay: float = 1e-4,
                 dropout_rate: float = 0.25, aux_weight: float = 0.5, channels_last: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.val_auroc = BinaryAUROC()
        # each branch's own logit on the validation patients who have that modality (branch early stopping)
        self.val_branch_auroc = torch.nn.ModuleDict({name: BinaryAUROC() for name in model.modalities})
        self.val_branch_loss = torch.nn.ModuleDict({name: MeanMetric() for name in model.modalities})

    def on_fit_start(self) -> None:
        if self.hparams.channels_last:  # per tensor: 2D convolutions' weights are 4D, 3D ones' 5D
            for parameter in self.model.parameters():
                if parameter.dim() in _CHANNELS_LAST:
                    parameter.data = parameter.data.to(memory_format=_CHANNELS_LAST[parameter.dim()])

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if self.hparams.channels_last:
            for inputs in batch["inputs"].values():
                for key, value in inputs.items():
                    if value.dim() in _CHANNELS_LAST:
                        inputs[key] = value.to(memory_format=_CHANNELS_LAST[value.dim()])
        return batch

    def _loss(self, batch: dict, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outputs = self.model(batch, mask)
        label = batch["label"]
        loss = F.binary_cross_entropy_with_logits(outputs["fusion_logit"].float(), label)
        present = batch["present"]
        per_modality = F.binary_cross_entropy_with_logits(
            outputs["modality_logits"].float(), label.unsqueeze(1).expand_as(present), reduction="none"
        )
        aux = (per_modality * present).sum() / present.sum().clamp(min=1.0)
        # The prior (every modality masked) is the reference of the modality Shapley values: fit it to the
        # base rate, so "base risk" means what a clinician expects.
        nothing = torch.zeros_like(present)
        prior = self.model.head(outputs["embeddings"], outputs["modality_logits"], nothing)
        prior_loss = F.binary_cross_entropy_with_logits(prior.float(), label)
        return loss + self.hparams.aux_weight * (aux + prior_loss) + self._encoder_penalties(), outputs

    def _encoder_penalties(self) -> torch.Tensor | float:
        """Regularisers an encoder asks for through a `penalty()` method (e.g. the table's group lasso)."""
        encoders = (branch.encoder for branch in self.model.branches.values())
        return sum((encoder.penalty() for encoder in encoders if hasattr(encoder, "penalty")), 0.0)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        mask = modality_dropout(batch["present"], self.hparams.dropout_rate)
        loss, _ = self._loss(batch, mask)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, outputs = self._loss(batch, batch["present"])
        label = batch["label"].long()
        self.val_auroc.update(outputs["fusion_logit"].float(), label)
        self.log("val_loss", loss, prog_bar=True, batch_size=len(label), sync_dist=True)
        self.log("val_auroc", self.val_auroc, prog_bar=True, on_epoch=True, on_step=False)
        present = batch["present"].bool()
        for column, name in enumerate(self.model.modalities):
            rows = present[:, column]
            branch_logit = outputs["modality_logits"][rows, column].float()
            self.val_branch_auroc[name].update(branch_logit, label[rows])
            self.val_branch_loss[name].update(
                F.binary_cross_entropy_with_logits(branch_logit, label[rows].float(), reduction="none")
            )

    def on_validation_epoch_end(self) -> None:
        for name in self.model.modalities:
            auroc, loss = self.val_branch_auroc[name], self.val_branch_loss[name]
            mean_loss = loss.compute()  # synced over devices; NaN when no validation patient has the modality
            if torch.isfinite(mean_loss):  # so every device takes the same branch here
                self.log(f"val_loss_{name}", mean_loss)
                self.log(f"val_auroc_{name}", auroc.compute())
            auroc.reset()
            loss.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.learning_rate,
                                 weight_decay=self.hparams.weight_decay)  # fmt: skip
