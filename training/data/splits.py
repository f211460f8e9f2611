"""Seeded, stratified train/validation/test splits shared by every dataset."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields

import numpy as np
from sklearn.model_selection import train_test_split


@dataclass(frozen=True)
class Splits:
    """Three index sets into one dataset. They are checked on construction: no index twice, and
    no example in two splits, however the splits were made."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __post_init__(self):
        for part in fields(self):
            indices = np.array(getattr(self, part.name), dtype=np.int64)
            if len(np.unique(indices)) != len(indices):
                raise ValueError(f"the {part.name} split holds an index more than once")
            indices.setflags(write=False)  # a checked split stays as checked
            object.__setattr__(self, part.name, indices)
        for first, second in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = np.intersect1d(getattr(self, first), getattr(self, second))
            if len(shared):
                raise ValueError(f"{len(shared)} examples are in both the {first} and the {second} split, "
                                 f"e.g. index {shared[0]}")

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def fingerprints(self) -> dict[str, str]:
        """With the same data, two runs used the same splits exactly when these match."""
        return {name: fingerprint(getattr(self, name)) for name in ("train", "val", "test")}


def fingerprint(indices: np.ndarray) -> str:
    """SHA-256 of sorted indices as little-endian int64."""
    return hashlib.sha256(np.sort(np.asarray(indices)).astype("<i8").tobytes()).hexdigest()


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    """Shuffle with `seed` and cut three index sets that keep each class's share."""
    indices = np.arange(len(labels))
    rest, test = train_test_split(indices, test_size=test_fraction, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction),
                                  stratify=labels[rest], random_state=seed)
    return Splits(train=np.sort(train), val=np.sort(val), test=np.sort(test))


def limit_per_split(splits: Splits, limit: int | None, seed: int) -> Splits:
    """Keep at most `limit` training examples (and limit/4 for val and test): the small, fast
    configuration tests use. Each subset is drawn from its own split only, so the limited splits
    are as disjoint as the full ones. Random subsets keep classes roughly balanced."""
    if not limit:
        return splits
    rng = np.random.default_rng(seed)

    def random_subset(indices: np.ndarray, n: int) -> np.ndarray:
        return np.sort(rng.permutation(indices)[:n]) if len(indices) > n else indices

    small = max(limit // 4, 1)
    return Splits(train=random_subset(splits.train, limit),
                  val=random_subset(splits.val, small),
                  test=random_subset(splits.test, small))
