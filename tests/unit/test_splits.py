"""Train/val/test splits: disjoint wherever they are made, limited subsets drawn from their own split,
and fingerprints that identify a split."""

import dataclasses
import hashlib
import struct

import numpy as np
import pytest

from training.data.mnist import load_mnist_digits, mnist_splits
from training.data.splits import Splits, limit_per_split, stratified_split

PARTS = ("train", "val", "test")


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_digits()


def as_sets(splits: Splits) -> dict[str, set[int]]:
    return {part: set(getattr(splits, part).tolist()) for part in PARTS}


def test_stratified_split_partitions_the_dataset_and_keeps_class_shares():
    labels = np.repeat(np.arange(4), [400, 300, 200, 100])
    splits = stratified_split(labels, val_fraction=0.1, test_fraction=0.2, seed=3)
    sets = as_sets(splits)
    assert sets["train"] | sets["val"] | sets["test"] == set(range(len(labels)))
    assert sum(map(len, sets.values())) == len(labels)
    assert splits.sizes() == {"train": 700, "val": 100, "test": 200}
    for part in PARTS:
        shares = np.bincount(labels[getattr(splits, part)], minlength=4) / len(getattr(splits, part))
        assert np.allclose(shares, [0.4, 0.3, 0.2, 0.1], atol=0.02), (part, shares)


@pytest.mark.parametrize("train, val, test", [
    ([0, 1, 2], [2, 3], [4]),   # train and val share 2
    ([0, 1], [2], [1, 3]),      # train and test share 1
    ([0], [1, 2], [3, 2]),      # val and test share 2
    ([0, 1, 1], [2], [3]),      # an index twice in one split
])
def test_overlapping_splits_cannot_be_made(train, val, test):
    with pytest.raises(ValueError):
        Splits(np.array(train), np.array(val), np.array(test))


def test_splits_cannot_be_changed_after_they_are_checked():
    splits = Splits(np.array([0, 1]), np.array([2]), np.array([3]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        splits.test = splits.train
    with pytest.raises(ValueError, match="read-only"):
        splits.test[0] = 0


def test_limit_per_split_draws_each_subset_from_its_own_split(mnist):
    _, labels = mnist
    full = mnist_splits(labels, seed=0)
    limited = limit_per_split(full, 1000, seed=0)
    assert limited.sizes() == {"train": 1000, "val": 250, "test": 250}
    full_sets, limited_sets = as_sets(full), as_sets(limited)
    for part in PARTS:
        assert limited_sets[part] <= full_sets[part], part


def test_limit_per_split_takes_random_subsets_that_keep_every_class(mnist):
    _, labels = mnist  # the file is sorted by class, so the first indices would be mostly low digits
    limited = limit_per_split(mnist_splits(labels, seed=0), 1000, seed=0)
    for part in PARTS:
        counts = np.bincount(labels[getattr(limited, part)], minlength=10)
        assert counts.min() >= 0.5 * counts.mean(), (part, counts)


def test_limit_per_split_is_seeded_and_no_limit_keeps_everything(mnist):
    _, labels = mnist
    full = mnist_splits(labels, seed=0)
    assert limit_per_split(full, None, seed=0) is full
    first = limit_per_split(full, 1000, seed=0).fingerprints()
    assert limit_per_split(full, 1000, seed=0).fingerprints() == first
    assert limit_per_split(full, 1000, seed=1).fingerprints()["train"] != first["train"]


def test_fingerprints_are_the_sha256_of_each_splits_sorted_indices():
    splits = Splits(np.array([5, 1, 3]), np.array([0]), np.array([2, 4]))
    expected = {part: hashlib.sha256(struct.pack(f"<{len(indices)}q", *indices)).hexdigest()
                for part, indices in (("train", [1, 3, 5]), ("val", [0]), ("test", [2, 4]))}
    assert splits.fingerprints() == expected
    assert len(set(expected.values())) == 3
    moved = Splits(np.array([5, 1]), np.array([0, 3]), np.array([2, 4]))
    assert moved.fingerprints()["train"] != expected["train"] and moved.fingerprints()["val"] != expected["val"]
    assert moved.fingerprints()["test"] == expected["test"]


def test_mnist_splits_are_disjoint_cover_every_digit_and_depend_on_the_seed(mnist):
    _, labels = mnist
    sets = as_sets(mnist_splits(labels, seed=0))
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
    assert sets["train"] | sets["val"] | sets["test"] == set(range(len(labels)))
    assert mnist_splits(labels, seed=0).fingerprints() == mnist_splits(labels, seed=0).fingerprints()
    assert mnist_splits(labels, seed=1).fingerprints()["test"] != mnist_splits(labels, seed=0).fingerprints()["test"]


def test_no_mnist_test_or_val_digit_has_the_pixels_of_a_training_digit(mnist):
    """Disjoint indices are not enough if the file held a digit twice."""
    pixels, labels = mnist
    splits = mnist_splits(labels, seed=0)
    digest = [hashlib.sha256(image.tobytes()).hexdigest() for image in pixels]
    train = {digest[i] for i in splits.train}
    assert not train & {digest[i] for i in splits.test}
    assert not train & {digest[i] for i in splits.val}
