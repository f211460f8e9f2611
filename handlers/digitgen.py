"""Digits drawn on request: JSON {"digit": 7, "count": 4, "seed": 123} -> generated images.

`digit` (0-9) and `seed` are optional: a missing seed is drawn at random, a missing digit is
drawn from the seed, and the answer names both, so the same seed repeats the same images.
`count` runs from 1 to the model-config's `max_count`. The answer is JSON {"digit", "seed",
"images": [base64 PNG, ...]} (28x28, white ink on black, MNIST's convention), or with
`Accept: image/png` one PNG of the images side by side, with headers X-Digit and X-Seed. The
examples of several requests share the generator's batch, each request's images computed from
its own noise.
"""

import secrets

import numpy as np
import torch

from handlers.base import ServingHandler
from handlers.transforms import generation
from handlers.transforms.errors import InputError
from handlers.transforms.images import png_bytes

JSON, PNG = "application/json", "image/png"


def wants_png(accept: str | None) -> bool:
    """Content negotiation over the two answers; anything else the client insists on gets 406."""
    types = {part.split(";")[0].strip().lower() for part in (accept or "").split(",")} - {""}
    if PNG in types or "image/*" in types:
        return True
    if not types or types & {JSON, "application/*", "*/*"}:
        return False
    raise InputError(f"cannot answer {accept!r}: accept {JSON} (base64 PNGs) or {PNG} (one image)", status=406)


class DigitgenHandler(ServingHandler):
    default_settings = {**ServingHandler.default_settings, "max_count": 64}
    signature = None  # a generator's parameters are not a tensor of inputs: no Open Inference Protocol

    def request_options(self, row, idx):
        return {"png": wants_png(self.request_header(idx, "Accept"))}

    def split_request(self, payload, options):
        """-> one example (noise row, digit) per image; the request's form for answer()."""
        digit, count, seed = generation.parse_request(payload, self.settings["max_count"],
                                                      lambda: secrets.randbelow(generation.MAX_SEED))
        examples = [(row, digit) for row in generation.noise(seed, count)]
        return examples, {"digit": digit, "seed": seed, **options}

    def decode_request(self, example):
        return example

    def collate(self, examples):
        noise = torch.stack([row for row, _ in examples])
        labels = torch.tensor([digit for _, digit in examples], dtype=torch.long)
        return noise.to(self.device), labels.to(self.device)

    def encode_responses(self, images, options):
        return list(generation.to_pixels(images))

    def answer(self, idx, answers, form):
        pixels = np.stack(answers)
        if form["png"]:  # the digit and seed travel as headers: a drawn seed stays repeatable
            self.context.set_response_content_type(idx, PNG)
            self.context.set_response_header(idx, "X-Digit", str(form["digit"]))
            self.context.set_response_header(idx, "X-Seed", str(form["seed"]))
            return png_bytes(generation.grid(pixels))
        return generation.response(form["digit"], form["seed"], pixels)
