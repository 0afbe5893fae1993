"""Notes encoders, integrated-gradient attributions and the TF-IDF baseline block, on the ingested demo notes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clinfuse.kinds.notes import NotesKind
from clinfuse.kinds.notes.alignment import NotesAlignment
from clinfuse.models.encoders.registry import EncoderSpec
from clinfuse.models.fusion import ModalityBranch
from sklearn.feature_extraction.text import TfidfTransformer

EMBED = 16


def encoder(architecture: str, dims: dict[str, int]) -> torch.nn.Module:
    torch.manual_seed(0)
    return NotesKind().build_encoder(EncoderSpec("notes", architecture, EMBED, dims))


@pytest.mark.parametrize("architecture", NotesKind.architectures)
def test_encoder_shapes_gradients_and_padding(architecture: str, demo_ingested, kit) -> None:
    folder, _ = demo_ingested
    read, dims = NotesKind().reader(kit.FolderCache(folder), "notes")
    assert dims == {"vocabulary": NotesAlignment.from_json(kit.FolderCache(folder).json("notes", "alignment"))
                    .vocabulary_size, "max_tokens": 256}  # fmt: skip
    assert read(-1)["tokens"].shape == (256,) and not read(-1)["tokens"].any()
    batch = {"tokens": torch.from_numpy(np.stack([read(0)["tokens"], read(1)["tokens"], read(-1)["tokens"]]))}
    model = encoder(architecture, dims)
    out = model(batch)
    assert out.shape == (3, EMBED) and torch.isfinite(out).all()  # an empty text too
    out.sum().backward()
    assert model.embedding.weight.grad is not None and model.embedding.weight.grad[0].abs().sum() == 0  # [PAD]
    model.eval()
    length = int((batch["tokens"][0] > 0).sum())
    short = batch["tokens"][:1, :length]
    if architecture == "cnn":  # more padding changes nothing: windows over padding are masked out
        padded = torch.cat([short, torch.zeros(1, 40, dtype=torch.long)], dim=1)
        torch.testing.assert_close(model({"tokens": short}), model({"tokens": padded}))


def test_cnn_attribution(demo_ingested, kit) -> None:
    folder, _ = demo_ingested
    kind, cache = NotesKind(), kit.FolderCache(folder)
    read, dims = kind.reader(cache, "notes")
    branch = ModalityBranch(encoder("cnn", dims), EMBED).eval()
    with torch.no_grad():
        branch.logit.weight.normal_()
    context = kind.attribution_context(cache, "notes", None)
    inputs = {"tokens": torch.from_numpy(read(0)["tokens"])[None]}
    attribution = kind.attribute(branch, inputs, context)
    tokens = attribution.detail["tokens"]
    ids = [i for i in inputs["tokens"][0].tolist() if i]
    assert attribution.kind == "notes" and [t for t, _ in tokens] == [context.vocabulary[i] for i in ids]
    values = np.array([v for _, v in tokens])
    assert np.isfinite(values).all() and np.abs(values).sum() > 0
    with torch.no_grad():  # completeness of integrated gradients: the values add up to logit(x) - logit(pad)
        embedded, padding = branch.encoder.tokens(inputs)
        delta = branch.logit(branch.encoder.from_tokens(embedded, padding)) - branch.logit(
            branch.encoder.from_tokens(torch.zeros_like(embedded), padding))
    assert values.sum() == pytest.approx(float(delta), abs=0.05 * abs(float(delta)) + 1e-3)
    names = [t["name"] for t in attribution.top]
    assert len(names) == len(set(names)) <= context.top_k
    assert [abs(t["value"]) for t in attribution.top] == sorted((abs(t["value"]) for t in attribution.top),
                                                                reverse=True)  # fmt: skip


def test_tfidf_block_matches_scikit_learn(demo_notes, demo_ingested, kit) -> None:
    folder, output = demo_ingested
    cache = kit.FolderCache(folder)
    block = NotesKind().baseline_features(cache, "notes", EMBED)
    alignment = NotesAlignment.from_json(output.alignment)
    top = alignment.top_tokens()
    assert block.names == [f"tfidf {alignment.vocabulary[i]}" for i in top] and "tfidf [PAD]" not in block.names
    train = demo_notes.cohort.ids_in("train")
    rows = np.array([r for r, pid in enumerate(output.present_ids) if pid in train])
    values = block.values(rows, np.zeros((len(rows), EMBED)))
    tokens = np.load(folder / "tokens.npy")[rows]
    counts = np.stack([np.bincount(t, minlength=alignment.vocabulary_size)[top] for t in tokens])
    expected = TfidfTransformer(smooth_idf=True).fit_transform(counts).toarray()
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)
    assert block.values(rows[:2], np.zeros((2, EMBED))).shape == (2, len(top))
