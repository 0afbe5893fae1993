"""Cache rows -> the encoder's input: {"tokens": (max_tokens,) int64}, [PAD] = 0 marking where the text ends.

No separate length or mask: the padding is read off the ids (one source of truth; lengths.npy is for reports).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from clinfuse.platform.kinds.base import Reader

if TYPE_CHECKING:
    from clinfuse.platform.cache import FeatureCache


def notes_reader(cache: FeatureCache, name: str) -> tuple[Reader, dict[str, int]]:
    tokens = cache.array(name, "tokens")
    vocabulary = int(cache.json(name, "alignment")["vocabulary_size"])

    def read(row: int) -> dict[str, np.ndarray]:
        if row < 0:
            return {"tokens": np.zeros(tokens.shape[1], np.int64)}
        return {"tokens": np.array(tokens[row], np.int64)}  # a copy: tensors need writable memory

    return read, {"vocabulary": vocabulary, "max_tokens": int(tokens.shape[1])}
