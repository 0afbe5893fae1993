"""Branch early stopping: a branch whose validation loss stops falling is frozen at its best weights."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from clinfuse.models.branch_early_stopping import BranchEarlyStopping
from clinfuse.models.encoders import EncoderSpec, build_encoder
from clinfuse.models.fusion import LateFusionModel
from clinfuse.models.lightning import LateFusionModule


def _module() -> SimpleNamespace:
    spec = EncoderSpec(kind="table", architecture="mlp", embed_dim=4, dims={"features": 3})
    return SimpleNamespace(model=LateFusionModel({"fast": build_encoder(spec), "slow": build_encoder(spec)}, 4))


def _epoch(callback: BranchEarlyStopping, module: SimpleNamespace, epoch: int, fast: float, slow: float) -> dict:
    """One validation end, then a weight update; returns the fast branch's weights as validated."""
    metrics = {"val_loss_fast": torch.tensor(fast), "val_loss_slow": torch.tensor(slow)}
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=epoch, callback_metrics=metrics)
    callback.on_validation_end(trainer, module)
    validated = {k: v.clone() for k, v in module.model.branches["fast"].state_dict().items()}
    for parameter in module.model.parameters():  # stands in for an optimiser step on trainable weights
        if parameter.requires_grad:
            parameter.data.add_(0.1)
    return validated


def test_a_stalled_branch_is_frozen_at_its_best_epoch_and_the_other_keeps_training() -> None:
    module, callback = _module(), BranchEarlyStopping(patience=2)
    fast = module.model.branches["fast"]
    _epoch(callback, module, 0, fast=0.60, slow=0.70)
    best = _epoch(callback, module, 1, fast=0.50, slow=0.68)  # the fast branch's best epoch
    _epoch(callback, module, 2, fast=0.55, slow=0.66)
    assert "fast" not in callback.frozen
    _epoch(callback, module, 3, fast=0.52, slow=0.64)  # two epochs without gain: frozen, best weights back
    assert callback.frozen == {"fast": 3}
    assert all(torch.equal(v, best[k]) for k, v in fast.state_dict().items())
    assert not any(p.requires_grad for p in fast.parameters())
    assert all(p.requires_grad for p in module.model.branches["slow"].parameters())
    _epoch(callback, module, 4, fast=0.10, slow=0.62)  # a frozen branch stays frozen and unchanged
    assert all(torch.equal(v, best[k]) for k, v in fast.state_dict().items())
    summary = callback.summary()
    assert summary["fast"] == {"best_val_loss": 0.5, "best_epoch": 1, "frozen_at_epoch": 3}
    assert summary["slow"]["frozen_at_epoch"] is None and summary["slow"]["best_epoch"] == 4


def test_sanity_check_validation_is_ignored() -> None:
    module, callback = _module(), BranchEarlyStopping(patience=1)
    metrics = {"val_loss_fast": torch.tensor(0.1), "val_loss_slow": torch.tensor(0.1)}
    callback.on_validation_end(SimpleNamespace(sanity_checking=True, current_epoch=0, callback_metrics=metrics), module)
    assert callback.summary() == {}


def test_a_modality_no_validation_patient_has_gets_no_branch_figures() -> None:
    module = LateFusionModule(_module().model)
    logged: dict[str, torch.Tensor] = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    batch = {
        "inputs": {name: {"features": torch.randn(4, 3)} for name in ("fast", "slow")},
        "present": torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]),  # nobody has "slow"
        "label": torch.tensor([0.0, 1.0, 0.0, 1.0]),
    }
    module.validation_step(batch, 0)
    module.on_validation_epoch_end()
    assert {"val_loss_fast", "val_auroc_fast"} <= set(logged)
    assert not any(name.endswith("_slow") for name in logged)
