"""Early stopping per modality branch: each branch is frozen at its own best validation epoch.

Modalities learn at different speeds: a wide expression table overfits within a few epochs while an image
encoder is still learning (Wang et al., "What Makes Training Multi-Modal Classification Networks Hard?",
CVPR 2020). One early-stopping point for the whole model either keeps the overfitted table branch or stops the
image branch early. Lightning's EarlyStopping stops the whole Trainer, so this callback does the per-branch
part: when a branch's own validation loss (the cross-entropy of its modality logit on the validation patients
who have that modality, logged by LateFusionModule as `val_loss_<name>`) has not improved for `patience`
epochs, its best weights are restored and it stops training; the fusion head and the other branches go on
and adapt to it. The loss is monitored rather than the AUROC because on a validation split of about a hundred
patients a weak modality's AUROC jumps by several points from one epoch to the next.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)


class BranchEarlyStopping(pl.Callback):
    """Freeze each modality branch at its lowest `val_loss_<name>` after `patience` epochs without gain."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best: dict[str, float] = {}
        self.best_epoch: dict[str, int] = {}
        self.best_state: dict[str, dict[str, torch.Tensor]] = {}
        self.frozen: dict[str, int] = {}  # branch -> epoch it was frozen at

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        for name, branch in module.model.branches.items():
            score = trainer.callback_metrics.get(f"val_loss_{name}")
            if name in self.frozen or score is None or not torch.isfinite(score):
                continue
            if float(score) < self.best.get(name, float("inf")):
                self.best[name], self.best_epoch[name] = float(score), epoch
                self.best_state[name] = {k: v.detach().clone() for k, v in branch.state_dict().items()}
            elif epoch - self.best_epoch[name] >= self.patience:
                self._freeze(name, branch, epoch)

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch, batch_idx: int) -> None:
        # Lightning puts the whole model back in train mode each epoch; frozen branches keep their
        # batch-norm statistics and switch dropout off.
        for name in self.frozen:
            module.model.branches[name].eval()

    def _freeze(self, name: str, branch: torch.nn.Module, epoch: int) -> None:
        branch.load_state_dict(self.best_state.pop(name))
        for parameter in branch.parameters():
            parameter.requires_grad_(False)
        branch.eval()
        self.frozen[name] = epoch
        log.info("branch %s frozen at epoch %d with its epoch-%d weights (val loss %.4f)",
                 name, epoch, self.best_epoch[name], self.best[name])  # fmt: skip

    def summary(self) -> dict[str, dict]:
        """Per branch: lowest validation loss, its epoch, and the epoch it was frozen at (None: never)."""
        return {name: {"best_val_loss": round(self.best[name], 4), "best_epoch": self.best_epoch[name],
                       "frozen_at_epoch": self.frozen.get(name)} for name in self.best}  # fmt: skip
