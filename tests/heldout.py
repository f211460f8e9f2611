"""Real held-out samples: never in any training split."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from training.data.mnist import load_mnist_digits, mnist_splits


@lru_cache(maxsize=1)
def mnist_test_digits(count: int = 40) -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = load_mnist_digits()
    test = mnist_splits(labels).test[:: max(len(mnist_splits(labels).test) // count, 1)][:count]
    return pixels[test], labels[test]
