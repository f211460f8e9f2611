"""Real held-out requests for each model: what `make predict`, the soak and load tests send."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from training.data.mnist import load_mnist_digits, mnist_splits


@dataclass(frozen=True)
class Sample:
    body: bytes
    content_type: str
    expected: str  # the true label, for printing and accuracy checks


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def mnist_samples(count: int) -> list[Sample]:
    """Held-out test digits (never trained on), spread over the classes."""
    pixels, labels = load_mnist_digits()
    test = mnist_splits(labels).test
    chosen = test[np.linspace(0, len(test) - 1, count).astype(int)]
    return [Sample(png_bytes(pixels[i]), "image/png", str(labels[i])) for i in chosen]


SAMPLES = {"mnist": mnist_samples}
