"""The notes' columns in the XGBoost baseline: TF-IDF of each patient's tokens over the training top-K words.

Computed here from the idf frozen in the alignment (scikit-learn's smoothed formula, then l2 normalisation, as
`TfidfTransformer` does) rather than by a `TfidfTransformer`: that would refit its idf on whatever rows it is
given, and the baseline asks for a few scoring patients at a time. tests/kinds/notes checks the two agree on the
training patients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from clinfuse.kinds.notes.alignment import TOP_TFIDF_TOKENS, NotesAlignment
from clinfuse.platform.kinds.base import FeatureBlock

if TYPE_CHECKING:
    from clinfuse.platform.cache import FeatureCache


def tfidf_block(cache: FeatureCache, name: str, k: int = TOP_TFIDF_TOKENS) -> FeatureBlock:
    alignment = NotesAlignment.from_json(cache.json(name, "alignment"))
    columns = np.asarray(alignment.top_tokens(k), np.int64)
    idf = alignment.idf()[columns]
    vocabulary = alignment.vocabulary
    tokens = cache.array(name, "tokens")

    def values(rows: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        return tfidf(np.asarray(tokens[np.asarray(rows, np.int64)]), columns, idf)

    return FeatureBlock([f"tfidf {vocabulary[i]}" for i in columns], values)


def tfidf(tokens: np.ndarray, columns: np.ndarray, idf: np.ndarray) -> np.ndarray:
    """(patients, len(columns)) l2-normalised term count x idf of the token ids `columns`."""
    position = np.full(int(max(columns.max(initial=0), tokens.max(initial=0))) + 1, -1, np.int64)
    position[columns] = np.arange(len(columns))
    where = position[tokens]
    counts = np.zeros((tokens.shape[0], len(columns)), np.float64)
    rows, cols = np.nonzero(where >= 0)
    np.add.at(counts, (rows, where[rows, cols]), 1.0)
    weighted = counts * idf
    norm = np.linalg.norm(weighted, axis=1, keepdims=True)
    return (weighted / np.where(norm > 0, norm, 1.0)).astype(np.float32)
