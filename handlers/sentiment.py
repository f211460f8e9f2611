"""Sentiment of English text -> {"label": "positive"|"negative", "score": probability of that label}.

One request is text/plain, JSON {"text": "..."}, or a JSON list of texts (answered by a list in
the same order). Bodies that TorchServe could not decode arrive as bytes: they must be UTF-8, and
are read as JSON when they start with "{" or "[" (e.g. `application/json; charset=utf-8`).

A text is judged whole, however long (up to `max_text_chars`): see handlers/transforms/text.py.
Per-sentence scores come with {"text": ..., "sentences": true} or the header `X-Sentences: true`
(for every text of the request): "sentences": [{"start", "end", "label", "score"}, ...].

Open Inference Protocol: input "text" (BYTES, one UTF-8 text per element); outputs "label"
(BYTES [n]) and "score" (FP32 [n], the probability of that label). Per-sentence scores are not
offered there.
"""

import json
from pathlib import Path

import torch

from handlers.base import ServingHandler
from handlers.oip import Signature, Tensor
from handlers.transforms import text
from handlers.transforms.errors import InputError

SENTENCES_OPTION = "sentences"
MAX_ROWS_PER_PASS = 256


def parse_flag(value, name: str) -> bool:
    """A JSON boolean, or a header's true/false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InputError(f"{name} must be true or false, got {value!r}")


class SentimentHandler(ServingHandler):
    default_settings = {**ServingHandler.default_settings, "max_text_chars": 20000, "max_texts_per_request": 32,
                        "max_request_chars": 100000}
    signature = Signature(input=Tensor("text", "BYTES", (-1,)),
                          outputs=(Tensor("label", "BYTES", (-1,)), Tensor("score", "FP32", (-1,))))

    def initialize(self, context):
        super().initialize(context)
        self.vocabulary = text.Vocabulary.load(Path(context.system_properties["model_dir"]) / text.VOCABULARY_FILE)

    def request_options(self, row, idx):
        header = self.request_header(idx, "X-Sentences")
        return {} if header is None else {SENTENCES_OPTION: parse_flag(header, "X-Sentences")}

    def split_request(self, payload, options):
        """-> [(text, per-sentence scores asked)], answer_is_a_list."""
        if isinstance(payload, (bytes, bytearray)):
            payload = text.decode_utf8(payload)
            if payload.lstrip()[:1] in ("{", "["):
                try:
                    payload = json.loads(payload)
                except json.JSONDecodeError as error:
                    raise InputError(f"body starts like JSON but is not valid JSON ({error})") from None
                except RecursionError:
                    raise InputError("JSON is nested too deeply") from None
        sentences = options.get(SENTENCES_OPTION, False)
        max_chars = self.settings["max_text_chars"]
        if isinstance(payload, list):
            limit = self.settings["max_texts_per_request"]
            if not payload:
                raise InputError("empty list: send at least one text")
            if len(payload) > limit:
                raise InputError(f"{len(payload)} texts in one request; the limit is {limit}", status=413)
            texts = [text.validate_text(item, max_chars, f"texts[{i}]") for i, item in enumerate(payload)]
            many = True
        else:
            if isinstance(payload, dict):
                if "text" not in payload or set(payload) - {"text", SENTENCES_OPTION}:
                    raise InputError('expected a JSON object {"text": "..."} (optionally "sentences": true) '
                                     f"or a JSON list of texts, got keys {sorted(payload)}")
                if SENTENCES_OPTION in payload:
                    sentences = parse_flag(payload[SENTENCES_OPTION], SENTENCES_OPTION)
                payload = payload["text"]
            texts, many = [text.validate_text(payload, max_chars)], False
        total, limit = sum(map(len, texts)), self.settings["max_request_chars"]
        if total > limit:
            raise InputError(f"{total} characters in one request; the limit is {limit}", status=413)
        return [(item, sentences) for item in texts], many

    def examples_from_elements(self, elements, options):
        """v2 texts go through the same checks and limits as a JSON list of texts."""
        texts = [text.decode_utf8(element) if isinstance(element, bytes) else element for element in elements]
        return self.split_request(texts, options)[0]

    def decode_request(self, item):
        document, sentences = item
        return self.vocabulary.encode_document(document, sentences)

    def collate(self, documents):
        tokens, lengths = text.pad_batch([ids for document in documents for ids in document.model_inputs()],
                                         self.vocabulary.pad_id)
        return documents, (tokens.to(self.device), lengths)

    def forward(self, batch):
        documents, (tokens, lengths) = batch
        # At most MAX_ROWS_PER_PASS chunks per pass: a batch of long documents (up to batchSize x
        # max_request_chars) would otherwise hold every chunk's LSTM states in memory at once.
        model_pass, step = super().forward, MAX_ROWS_PER_PASS
        logits = torch.cat([model_pass((tokens[start:start + step], lengths[start:start + step]))
                            for start in range(0, len(lengths), step)])
        return text.score_documents(documents, logits)

    def encode_responses(self, scores, options):
        return [text.document_response(score) for score in scores]

    def oip_outputs(self, answers, options):
        label, score = self.signature.outputs
        return [Tensor(label.name, label.datatype, (len(answers),), [answer["label"] for answer in answers]),
                Tensor(score.name, score.datatype, (len(answers),), [answer["score"] for answer in answers])]
