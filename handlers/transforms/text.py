"""Text pre/post-processing: the one tokenizer, vocabulary and encoder used by training and serving.

    normalise -> tokenize -> Vocabulary.encode (ids, truncated to max_tokens) -> pad_batch
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from handlers.transforms.errors import InputError

VOCABULARY_FILE = "vocabulary.json"  # written next to the model by training, shipped in the .mar
PAD, UNK = "<pad>", "<unk>"
URL, USER, NUMBER = "<url>", "<user>", "<num>"
SENTIMENT_CLASSES = ["negative", "positive"]

_URL = re.compile(r"(?:https?://|www\.)\S+")
_MENTION = re.compile(r"@\w+")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_REPEATED_LETTER = re.compile(r"([^\W\d_])\1{2,}")  # "soooo" and "sooooooo" are one word
# zero-width joiners, emoji variation selectors and skin-tone modifiers carry no sentiment
_INVISIBLE = re.compile("[\u200b-\u200d\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")
_TOKEN = re.compile(
    r"<url>|<user>|<num>"
    r"|[^\W\d_]+(?:'[^\W\d_]+)*"  # words, keeping contractions whole: don't, it's
    r"|[:;=][-']?[()\[\]dp/\\|*]"  # the common ASCII emoticons, lowercased: :) ;-( :d :p
    r"|[!?]"
    r"|[^\w\s\x00-\x7f]"  # any other non-ASCII symbol, e.g. one emoji, is one token
)


def normalise(text: str) -> str:
    """Lowercase, unescape HTML entities, and replace URLs, @mentions and numbers by placeholders."""
    text = html.unescape(text).replace("\u2019", "'").replace("\u2018", "'")
    text = _INVISIBLE.sub("", text).lower()
    text = _URL.sub(f" {URL} ", text)
    text = _MENTION.sub(f" {USER} ", text)
    text = _NUMBER.sub(f" {NUMBER} ", text)
    return _REPEATED_LETTER.sub(r"\1\1", text)


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(normalise(text))


@dataclass
class Vocabulary:
    """Token list (index = id; 0 is <pad>, 1 is <unk>) and the model's maximum sequence length."""

    tokens: list[str]
    max_tokens: int

    def __post_init__(self):
        if self.tokens[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary starts with {PAD} and {UNK}")
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, cut to the first `max_tokens`; a text without tokens ("...") is [<unk>]
        so every sequence has a length of at least 1."""
        ids = [self.index.get(token, self.unk_id) for token in tokenize(text)[: self.max_tokens]]
        return ids or [self.unk_id]

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"max_tokens": self.max_tokens, "tokens": self.tokens}, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        stored = json.loads(Path(path).read_text())
        return cls(tokens=stored["tokens"], max_tokens=stored["max_tokens"])


def build_vocabulary(texts, min_freq: int, max_size: int, max_tokens: int, curated=()) -> Vocabulary:
    """The `max_size` most frequent tokens seen at least `min_freq` times in `texts`, plus every token of
    `curated` texts (e.g. a rated lexicon, whose words each appear once); ties broken alphabetically, so
    the same texts always give the same ids."""
    counts = Counter(token for text in texts for token in tokenize(text))
    required = {token for text in curated for token in tokenize(text)}
    counts.update(required)
    frequent = sorted((token for token, n in counts.items() if n >= min_freq or token in required),
                      key=lambda t: (-counts[t], t))
    return Vocabulary(tokens=[PAD, UNK] + frequent[: max_size - 2], max_tokens=max_tokens)


def pad_batch(sequences: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Id lists -> (tokens int64 (B, longest in this batch), lengths int64 (B,))."""
    lengths = torch.tensor([len(ids) for ids in sequences], dtype=torch.int64)
    tokens = torch.full((len(sequences), int(lengths.max())), pad_id, dtype=torch.int64)
    for row, ids in enumerate(sequences):
        tokens[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.int64)
    return tokens, lengths


def decode_utf8(payload: bytes | bytearray) -> str:
    try:
        return bytes(payload).decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"body is not valid UTF-8 (byte {error.start})") from None


def validate_text(value, max_chars: int, name: str = "text") -> str:
    """One untrusted text -> the same str, or InputError naming the problem. Over `max_chars` is
    refused (413) rather than cut: the client learns its text was not read in full."""
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InputError(f"{name} is empty or only whitespace")
    if len(value) > max_chars:
        raise InputError(f"{name} has {len(value)} characters; the limit is {max_chars}", status=413)
    return value


def probabilities_to_response(probabilities: torch.Tensor) -> dict:
    """Softmax row [p(negative), p(positive)] -> {"label": ..., "score": probability of that label}."""
    best = int(probabilities.argmax())
    return {"label": SENTIMENT_CLASSES[best], "score": float(probabilities[best])}
