"""Late fusion: any subset of modalities is a valid input, encoders are injected, dropout keeps one."""

from __future__ import annotations

import itertools

import torch
from clinfuse.models.fusion import FusionHead, LateFusionModel
from clinfuse.models.lightning import modality_dropout
from torch import nn


class _Linear(nn.Module):
    """A stand-in encoder for a made-up modality kind: the fusion code must accept it unchanged."""

    def __init__(self, features: int, embed_dim: int) -> None:
        super().__init__()
        self.net = nn.Linear(features, embed_dim)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(inputs["x"])


def _model_and_batch(n_modalities: int = 3, batch: int = 6) -> tuple[LateFusionModel, dict]:
    names = [f"m{i}" for i in range(n_modalities)]
    model = LateFusionModel({n: _Linear(4 + i, 8) for i, n in enumerate(names)}, embed_dim=8)
    nn.init.normal_(model.head.interaction[-1].weight)  # make the interaction term non-trivial
    inputs = {n: {"x": torch.randn(batch, 4 + i)} for i, n in enumerate(names)}
    return model.eval(), {"inputs": inputs, "present": torch.ones(batch, n_modalities)}


def test_every_subset_gives_a_finite_prediction_and_the_empty_one_is_the_prior() -> None:
    model, batch = _model_and_batch()
    with torch.no_grad():
        embeddings, logits = model.encode(batch)
        for subset in itertools.product([0.0, 1.0], repeat=3):
            mask = torch.tensor(subset).expand(6, 3)
            out = model.head(embeddings, logits, mask)
            assert out.shape == (6,) and torch.isfinite(out).all()
        prior = model.head(embeddings, logits, torch.zeros(6, 3))
    assert torch.allclose(prior, prior[0].expand(6)), "with nothing present every patient gets the same prior"


def test_absent_modality_inputs_do_not_change_the_prediction() -> None:
    model, batch = _model_and_batch()
    batch["present"][:, 1] = 0.0
    with torch.no_grad():
        before = model(batch)["fusion_logit"]
        batch["inputs"]["m1"]["x"] = torch.randn_like(batch["inputs"]["m1"]["x"]) * 100
        after = model(batch)["fusion_logit"]
    assert torch.allclose(before, after)


def test_number_and_names_of_modalities_come_from_the_encoders() -> None:
    model, batch = _model_and_batch(n_modalities=5)
    assert model.modalities == ["m0", "m1", "m2", "m3", "m4"]
    assert model(batch)["modality_logits"].shape == (6, 5)


def test_fusion_head_without_interaction_is_additive() -> None:
    head = FusionHead(2, 4).eval()  # in training, each call would also move the logit centres
    logits = torch.tensor([[1.0, 2.0]])
    embeddings = torch.randn(1, 2, 4)
    both = head(embeddings, logits, torch.tensor([[1.0, 1.0]]))
    assert torch.allclose(both, head.prior + 3.0)


def test_modality_dropout_keeps_at_least_one_present_modality() -> None:
    present = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]).repeat(200, 1)
    dropped = modality_dropout(present, rate=0.9, generator=torch.Generator().manual_seed(0))
    assert (dropped <= present).all()
    assert (dropped.sum(dim=1) >= 1).all()
    assert dropped.sum() < present.sum()


def test_logit_centres_track_present_patients_in_training_and_stay_fixed_in_eval() -> None:
    head = FusionHead(n_modalities=2, embed_dim=4).train()
    embeddings = torch.zeros(4, 2, 4)
    logits = torch.tensor([[-2.0, 5.0], [-2.0, 5.0], [-2.0, 99.0], [-2.0, 99.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # the 99s belong to absent patients
    for _ in range(200):
        head(embeddings, logits, mask)
    assert torch.allclose(head.logit_center, torch.tensor([-2.0, 5.0]), atol=1e-4)
    head.eval()
    head(embeddings, logits + 10.0, mask)
    assert torch.allclose(head.logit_center, torch.tensor([-2.0, 5.0]), atol=1e-4)
    # a modality at its centre moves the prediction by nothing, so presence alone carries no risk
    with_both = head(embeddings, head.logit_center.expand(4, 2), torch.ones(4, 2))
    without = head(embeddings, head.logit_center.expand(4, 2), torch.zeros(4, 2))
    assert torch.allclose(with_both, without)
