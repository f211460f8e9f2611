"""Sentiment of English text -> {"label": "positive"|"negative", "score": probability of that label}.

One request is text/plain, JSON {"text": "..."}, or a JSON list of texts (answered by a list in
the same order). Bodies that TorchServe could not decode arrive as bytes: they must be UTF-8, and
are read as JSON when they start with "{" or "[" (e.g. `application/json; charset=utf-8`).
"""

import json
from pathlib import Path

from handlers.base import ServingHandler
from handlers.transforms import text
from handlers.transforms.errors import InputError


class SentimentHandler(ServingHandler):
    default_settings = {**ServingHandler.default_settings, "max_text_chars": 5000, "max_texts_per_request": 32}

    def initialize(self, context):
        super().initialize(context)
        self.vocabulary = text.Vocabulary.load(Path(context.system_properties["model_dir"]) / text.VOCABULARY_FILE)

    def split_request(self, payload):
        if isinstance(payload, (bytes, bytearray)):
            payload = text.decode_utf8(payload)
            if payload.lstrip()[:1] in ("{", "["):
                try:
                    payload = json.loads(payload)
                except json.JSONDecodeError as error:
                    raise InputError(f"body starts like JSON but is not valid JSON ({error})") from None
                except RecursionError:
                    raise InputError("JSON is nested too deeply") from None
        max_chars = self.settings["max_text_chars"]
        if isinstance(payload, list):
            limit = self.settings["max_texts_per_request"]
            if not payload:
                raise InputError("empty list: send at least one text")
            if len(payload) > limit:
                raise InputError(f"{len(payload)} texts in one request; the limit is {limit}", status=413)
            return [text.validate_text(item, max_chars, f"texts[{i}]") for i, item in enumerate(payload)], True
        if isinstance(payload, dict):
            if set(payload) != {"text"}:
                raise InputError('expected a JSON object {"text": "..."} or a JSON list of texts, '
                                 f"got keys {sorted(payload)}")
            payload = payload["text"]
        return [text.validate_text(payload, max_chars)], False

    def decode_request(self, payload):
        return self.vocabulary.encode(payload)

    def collate(self, examples):
        tokens, lengths = text.pad_batch(examples, self.vocabulary.pad_id)
        return tokens.to(self.device), lengths

    def encode_responses(self, logits, options):
        return [text.probabilities_to_response(row) for row in logits.softmax(dim=1)]
