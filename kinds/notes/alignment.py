"""The notes' frozen alignment: a word-level tokenizer and TF-IDF statistics fitted on the training patients.

A word-level tokenizer (Hugging Face `tokenizers`: BERT's normaliser, lower-case and accents stripped, and its
whitespace/punctuation pre-tokenizer) rather than word pieces: each token is a whole word, so attributions,
the TF-IDF baseline's feature names and the dashboard's highlights read as words ("consolidation", not
"##ation"), and a word never seen in training maps to [UNK] instead of being spelt out in pieces the model never
learnt as a unit. The tokenizer is stored with `to_str()` (JSON) in the alignment, never pickled.

Patients' notes are concatenated newest first, each after a marker token of its type ("[type:ds]"), and cut at
`max_tokens`; the character offsets of every token in its note are kept for the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PAD, UNK, NOTE = "[PAD]", "[UNK]", "[type:other]"  # NOTE: a note type not seen in training
FORMAT_VERSION = 1
TOP_TFIDF_TOKENS = 256


def marker(note_type: str) -> str:
    return f"[type:{note_type.strip().lower()}]"


@dataclass
class NotesAlignment:
    tokenizer_json: str
    max_tokens: int
    document_frequency: list[int]  # per token id: training patients whose kept notes contain it
    n_documents: int  # training patients with notes

    @classmethod
    def fit(cls, notes: pd.DataFrame, max_tokens: int, vocabulary_size: int, min_count: int) -> NotesAlignment:
        """Train the tokenizer on the training patients' notes (`notes`: their kept notes), then count per token
        the training patients whose sequence holds it."""
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        markers = sorted({marker(t) for t in notes["note_type"]} | {NOTE})
        trainer = trainers.WordLevelTrainer(vocab_size=vocabulary_size, min_frequency=min_count,
                                            special_tokens=[PAD, UNK, *markers], show_progress=False)  # fmt: skip
        tokenizer.train_from_iterator(notes["text"].tolist(), trainer=trainer, length=len(notes))
        fitted = cls(tokenizer.to_str(), max_tokens, [], 0)
        sequences = fitted.encode(notes)
        frequency = np.zeros(fitted.vocabulary_size, np.int64)
        for ids in sequences.ids.values():
            frequency[np.unique(ids)] += 1
        fitted.document_frequency = frequency.tolist()
        fitted.n_documents = len(sequences.ids)
        return fitted

    @cached_property
    def tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        return Tokenizer.from_str(self.tokenizer_json)

    @property
    def vocabulary(self) -> list[str]:
        """Token strings by id."""
        by_id = sorted(self.tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
        return [token for token, _ in by_id]

    @property
    def vocabulary_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def idf(self) -> np.ndarray:
        """Smoothed inverse document frequency per token id, scikit-learn's formula: ln((1 + n) / (1 + df)) + 1."""
        return np.log((1 + self.n_documents) / (1 + np.asarray(self.document_frequency, np.float64))) + 1.0

    def top_tokens(self, k: int = TOP_TFIDF_TOKENS) -> list[int]:
        """The k token ids (not [PAD]/[UNK]) in most training patients' notes; ties by id, so the order is fixed."""
        frequency = np.asarray(self.document_frequency)
        ids = [i for i in np.lexsort((np.arange(len(frequency)), -frequency)).tolist() if i > 1 and frequency[i] > 0]
        return ids[:k]

    def encode(self, notes: pd.DataFrame) -> EncodedNotes:
        """Each patient's token ids (newest note first, markers included, cut at max_tokens) and, per kept
        token, (note number, start, end) in that note's text (markers: -1, -1)."""
        tokenizer = self.tokenizer
        vocabulary = tokenizer.get_vocab(with_added_tokens=True)
        unknown_type = vocabulary[NOTE]
        encodings = tokenizer.encode_batch(notes["text"].tolist(), add_special_tokens=False)
        ids: dict[str, np.ndarray] = {}
        spans: dict[str, np.ndarray] = {}
        truncated: dict[str, int] = {}
        for patient, positions in notes.groupby("patient_id", sort=False).indices.items():
            patient_ids, patient_spans, total = [], [], 0
            for number, position in enumerate(positions):  # `notes` is ordered newest first per patient
                encoding = encodings[position]
                total += 1 + len(encoding.ids)
                room = self.max_tokens - len(patient_ids)
                if room <= 0:
                    continue
                kind = vocabulary.get(marker(notes["note_type"].iat[position]), unknown_type)
                patient_ids += [kind, *encoding.ids][:room]
                patient_spans += [(number, -1, -1), *((number, s, e) for s, e in encoding.offsets)][:room]
            ids[patient] = np.asarray(patient_ids, np.int64)
            spans[patient] = np.asarray(patient_spans, np.int64).reshape(-1, 3)
            truncated[patient] = total - len(patient_ids)
        return EncodedNotes(ids, spans, truncated)

    def to_json(self) -> dict:
        return {"format_version": FORMAT_VERSION, "tokenizer": self.tokenizer_json, "max_tokens": self.max_tokens,
                "document_frequency": self.document_frequency, "n_documents": self.n_documents,
                "vocabulary_size": self.vocabulary_size}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> NotesAlignment:
        if data.get("format_version") != FORMAT_VERSION:
            from clinfuse.platform.errors import ClinFuseError

            found = data.get("format_version")
            raise ClinFuseError(f"the model's notes alignment is of format {found!r}, not {FORMAT_VERSION}",
                                "score with a model trained by this ClinFuse version")  # fmt: skip
        return cls(data["tokenizer"], int(data["max_tokens"]), list(data["document_frequency"]),
                   int(data["n_documents"]))  # fmt: skip


@dataclass
class EncodedNotes:
    ids: dict[str, np.ndarray]  # patient -> token ids (<= max_tokens)
    spans: dict[str, np.ndarray]  # patient -> (tokens, 3): note number, start, end
    truncated: dict[str, int]  # patient -> tokens cut beyond max_tokens

    def padded(self, patients: list[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """(patients, max_tokens) int64 ids right-padded with 0, and (patients,) lengths."""
        tokens = np.zeros((len(patients), max_tokens), np.int64)
        lengths = np.zeros(len(patients), np.int64)
        for row, patient in enumerate(patients):
            ids = self.ids[patient]
            tokens[row, : len(ids)] = ids
            lengths[row] = len(ids)
        return tokens, lengths


def unknown_share(tokens: np.ndarray) -> float:
    """Share of [UNK] among the stored tokens (a vocabulary that does not fit the scoring notes shows here)."""
    used = int((tokens != 0).sum())
    return round(float((tokens == 1).sum()) / used, 4) if used else 0.0
