"""Text pre/post-processing: the one tokenizer, vocabulary and encoder used by training and serving.

    training: normalise -> tokenize -> Vocabulary.encode (ids, cut to max_tokens) -> pad_batch
    serving:  Vocabulary.encode_document (the whole text in chunks of at most max_tokens) -> pad_batch
              -> model -> score_documents (one score per text, optionally one per sentence)

The model reads at most `max_tokens` tokens at once, the length it was trained on. A text that
fits is read whole, exactly as in training; a longer one (a review of many paragraphs) is cut at
sentence ends into chunks of whole sentences that each fit, and its score combines every chunk's:
nothing of a document is left unread.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from handlers.transforms.errors import InputError

VOCABULARY_FILE = "vocabulary.json"  # written next to the model by training, shipped in the .mar
PAD, UNK = "<pad>", "<unk>"
URL, USER, NUMBER = "<url>", "<user>", "<num>"
SENTIMENT_CLASSES = ["negative", "positive"]

_HTML_BREAK = re.compile(r"<br\s*/?>", re.I)  # web reviews often keep their <br /> line breaks
# A sentence ends at . ! ? (and any closing quotes or brackets) before whitespace, or at a line break.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]\u201d\u2019]*(?=\s|$)|\n|<br\s*/?>", re.I)
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
    text = html.unescape(_HTML_BREAK.sub(" ", text)).replace("\u2019", "'").replace("\u2018", "'")
    text = _INVISIBLE.sub("", text).lower()
    text = _URL.sub(f" {URL} ", text)
    text = _MENTION.sub(f" {USER} ", text)
    text = _NUMBER.sub(f" {NUMBER} ", text)
    return _REPEATED_LETTER.sub(r"\1\1", text)


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(normalise(text))


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) character offsets of the sentences of `text`, surrounding whitespace left out."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end() if match.group()[0] in ".!?" else match.start()
        spans.append((start, end))
        start = match.end()
    spans.append((start, len(text)))
    trimmed = []
    for start, end in spans:
        segment = text[start:end]
        if segment.strip():
            trimmed.append((start + len(segment) - len(segment.lstrip()), end - (len(segment) - len(segment.rstrip()))))
    return trimmed


@dataclass
class EncodedDocument:
    """What the model reads of one text: `chunks` (token id lists of at most max_tokens each) and,
    when per-sentence scores were asked for, each sentence's character span and ids (else None, [])."""

    chunks: list[list[int]]
    sentence_spans: list[tuple[int, int]] | None = None
    sentences: list[list[int]] = field(default_factory=list)

    def model_inputs(self) -> list[list[int]]:
        return self.chunks + self.sentences


@dataclass
class DocumentScore:
    probabilities: torch.Tensor  # (classes,): the whole text
    sentences: list[tuple[tuple[int, int], torch.Tensor]] | None  # (span, probabilities) per sentence, if asked


def pack_sentences(sentences: list[list[int]], max_tokens: int) -> list[list[int]]:
    """Consecutive sentences joined into chunks of at most `max_tokens` ids; a longer sentence is cut."""
    chunks: list[list[int]] = []
    for ids in sentences:
        for start in range(0, len(ids), max_tokens):
            piece = ids[start:start + max_tokens]
            if chunks and len(chunks[-1]) + len(piece) <= max_tokens:
                chunks[-1] = chunks[-1] + piece
            else:
                chunks.append(piece)
    return chunks


def combine_chunks(logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """One text's probabilities from its chunks' logits: the geometric mean of the chunks'
    probabilities weighted by their tokens, renormalised (for two classes, the token-weighted mean of
    the chunks' log-odds). Every token counts the same whichever chunk it is in; one chunk gives its
    own softmax."""
    weights = lengths.to(logits.dtype)[:, None]
    return ((weights * logits.log_softmax(dim=1)).sum(dim=0) / weights.sum()).softmax(dim=0)


def score_documents(documents: list[EncodedDocument], logits: torch.Tensor) -> list[DocumentScore]:
    """Split the logits of every document's model_inputs() (in order) back into one score per document."""
    scores, row = [], 0
    for document in documents:
        chunk_logits = logits[row:row + len(document.chunks)]
        row += len(document.chunks)
        sentence_logits = logits[row:row + len(document.sentences)]
        row += len(document.sentences)
        lengths = torch.tensor([len(ids) for ids in document.chunks])
        sentences = (None if document.sentence_spans is None
                     else list(zip(document.sentence_spans, sentence_logits.softmax(dim=1))))
        scores.append(DocumentScore(combine_chunks(chunk_logits, lengths), sentences))
    return scores


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

    def ids(self, text: str) -> list[int]:
        return [self.index.get(token, self.unk_id) for token in tokenize(text)]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, cut to the first `max_tokens` (training's view of a text); a text without
        tokens ("...") is [<unk>] so every sequence has a length of at least 1."""
        return self.ids(text)[: self.max_tokens] or [self.unk_id]

    def encode_document(self, text: str, sentences: bool = False) -> EncodedDocument:
        """All of `text`: one chunk if it fits in max_tokens (the same ids as encode()), else chunks of
        whole sentences. With `sentences`, each sentence too (a sentence is read up to max_tokens)."""
        whole = self.ids(text)
        if len(whole) <= self.max_tokens and not sentences:
            return EncodedDocument([whole or [self.unk_id]])
        spans = [(span, ids) for span in sentence_spans(text) for ids in [self.ids(text[span[0]:span[1]])] if ids]
        chunks = [whole or [self.unk_id]] if len(whole) <= self.max_tokens else pack_sentences(
            [ids for _, ids in spans], self.max_tokens)
        if not sentences:
            return EncodedDocument(chunks)
        return EncodedDocument(chunks, [span for span, _ in spans], [ids[: self.max_tokens] for _, ids in spans])

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"max_tokens": self.max_tokens, "tokens": self.tokens}, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        stored = json.loads(Path(path).read_text())
        return cls(tokens=stored["tokens"], max_tokens=stored["max_tokens"])


def build_vocabulary(texts, min_freq: int, max_size: int, max_tokens: int, curated=(), extra=()) -> Vocabulary:
    """The `max_size` most frequent tokens seen at least `min_freq` times in `texts`, plus every token of
    `curated` texts (e.g. a rated lexicon, whose words each appear once); ties broken alphabetically, so
    the same texts always give the same ids. Then the `extra` tokens not already in, in their order
    (e.g. the most frequent words of general English)."""
    counts = Counter(token for text in texts for token in tokenize(text))
    required = {token for text in curated for token in tokenize(text)}
    counts.update(required)
    frequent = sorted((token for token, n in counts.items() if n >= min_freq or token in required),
                      key=lambda t: (-counts[t], t))
    tokens = [PAD, UNK] + frequent[: max_size - 2]
    known = set(tokens)
    tokens += [token for token in dict.fromkeys(extra) if token not in known]
    return Vocabulary(tokens=tokens, max_tokens=max_tokens)


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


def document_response(score: DocumentScore) -> dict:
    """{"label", "score"} of the whole text and, if asked for, "sentences": [{"start", "end", "label",
    "score"}, ...] with character offsets into the text as sent."""
    response = probabilities_to_response(score.probabilities)
    if score.sentences is not None:
        response["sentences"] = [{"start": start, "end": end, **probabilities_to_response(probabilities)}
                                 for (start, end), probabilities in score.sentences]
    return response
