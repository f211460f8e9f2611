"""Seeded, stratified train/validation/test splits shared by every dataset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split


@dataclass
class Splits:
    train: np.ndarray  # indices into the dataset
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    """Shuffle with `seed` and cut three index sets that keep each class's share."""
    indices = np.arange(len(labels))
    rest, test = train_test_split(indices, test_size=test_fraction, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction),
                                  stratify=labels[rest], random_state=seed)
    return Splits(train=np.sort(train), val=np.sort(val), test=np.sort(test))


def limit_per_split(splits: Splits, limit: int | None, seed: int) -> Splits:
    """Keep at most `limit` training examples (and limit/4 for val and test): the small, fast
    configuration tests use. Random subsets keep classes roughly balanced."""
    if not limit:
        return splits
    rng = np.random.default_rng(seed)

    def take(idx: np.ndarray, n: int) -> np.ndarray:
        return np.sort(rng.permutation(idx)[:n]) if len(idx) > n else idx

    small = max(limit // 4, 1)
    return Splits(train=take(splits.train, limit), val=take(splits.val, small), test=take(splits.test, small))
