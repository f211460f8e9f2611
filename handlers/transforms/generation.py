"""Conditional digit generation: the one definition of a request, its noise and its images,
used by training (sample grids, the quality report) and by the handler.

A request is {"digit": 0-9, "count": n, "seed": s}. The noise of image i is the i-th row of
a standard normal draw seeded with `seed`, so the same request gives the same images
whatever else shares its batch. Images come out of the generator in [-1, 1] (tanh) and leave
as MNIST's convention: uint8, white ink on black, 28x28.
"""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import torch

from handlers.transforms.errors import InputError
from handlers.transforms.images import png_bytes

NUM_CLASSES = 10
NOISE_DIM = 64
MAX_SEED = 2**63 - 1
REQUEST_FIELDS = ("digit", "count", "seed")


def parse_request(payload, max_count: int, random_seed) -> tuple[int, int, int]:
    """A JSON request body (bytes, str or already parsed) -> (digit, count, seed). A missing seed
    is `random_seed()`; a missing digit is drawn from the seed, so the answer's seed repeats it."""
    if isinstance(payload, (bytes, bytearray, str)):
        if not payload.strip():
            raise InputError('empty body: send JSON such as {"digit": 7, "count": 4, "seed": 123}')
        try:
            payload = json.loads(payload)
        except UnicodeDecodeError:
            raise InputError("the body is not valid UTF-8 JSON") from None
        except ValueError:
            raise InputError('the body is not valid JSON: send {"digit": 7, "count": 4, "seed": 123}') from None
        except RecursionError:
            raise InputError("the JSON is nested too deeply") from None
    if not isinstance(payload, dict):
        raise InputError(f'expected a JSON object such as {{"digit": 7, "count": 4}}, got {type(payload).__name__}')
    unknown = sorted(set(payload) - set(REQUEST_FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}: the fields are {', '.join(REQUEST_FIELDS)}")
    count = integer_field(payload, "count", 1, 1, max_count, status_over=413)
    seed = integer_field(payload, "seed", None, 0, MAX_SEED)
    seed = random_seed() if seed is None else seed
    digit = integer_field(payload, "digit", None, 0, NUM_CLASSES - 1)
    if digit is None:
        digit = int(torch.randint(NUM_CLASSES, (1,), generator=torch.Generator().manual_seed(seed)))
    return digit, count, seed


def integer_field(payload: dict, name: str, default, low: int, high: int, status_over: int = 400):
    value = payload.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, got {json.dumps(value)[:40]}")
    if value < low:
        raise InputError(f"{name} must be at least {low}, got {value}")
    if value > high:
        raise InputError(f"{name} must be at most {high}, got {value}", status=status_over)
    return value


def noise(seed: int, count: int, dim: int = NOISE_DIM) -> torch.Tensor:
    """The generator's input for `count` images of one request: (count, dim), from `seed` alone."""
    return torch.randn(count, dim, generator=torch.Generator().manual_seed(seed))


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """Generator output (N, 1, 28, 28) in [-1, 1] -> uint8 (N, 28, 28), MNIST's convention."""
    scaled = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8).squeeze(1).numpy()


def to_model_range(pixels: np.ndarray) -> torch.Tensor:
    """uint8 digits (N, 28, 28) -> (N, 1, 28, 28) float in [-1, 1], what the discriminator sees."""
    return torch.as_tensor(pixels, dtype=torch.float32).unsqueeze(1) / 127.5 - 1


def grid(pixels: np.ndarray, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """uint8 digits (N, 28, 28) as one image, row by row with `gap` black pixels between them."""
    count, side = len(pixels), pixels.shape[-1]
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    canvas = np.zeros((rows * (side + gap) - gap, columns * (side + gap) - gap), dtype=np.uint8)
    for index, digit in enumerate(pixels):
        row, column = divmod(index, columns)
        top, left = row * (side + gap), column * (side + gap)
        canvas[top:top + side, left:left + side] = digit
    return canvas


def response(digit: int, seed: int, pixels: np.ndarray) -> dict:
    """The JSON answer: one base64 PNG per image."""
    return {"digit": digit, "seed": seed, "images": [base64.b64encode(png_bytes(p)).decode() for p in pixels]}
