"""Fashion-MNIST from Debian's package: the real files, the class split, the ImageFolder layout."""

import numpy as np
import pytest

from training.data import fashion_mnist


def test_real_files_load_with_their_documented_sizes_and_balance():
    images, labels = fashion_mnist.load("train")
    test_images, test_labels = fashion_mnist.load("t10k")
    assert images.shape == (60_000, 28, 28) and images.dtype == np.uint8
    assert test_images.shape == (10_000, 28, 28)
    assert np.bincount(labels).tolist() == [6000] * 10 and np.bincount(test_labels).tolist() == [1000] * 10


def test_without_apt_the_fetch_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="apt-get download dataset-fashion-mnist"):
        fashion_mnist.fetch(tmp_path)


def test_a_changed_file_is_refused(tmp_path):
    data_dir = tmp_path / "fashion-mnist" / fashion_mnist.DATA_DIR
    data_dir.mkdir(parents=True)
    for name in fashion_mnist.IDX_SHA256:
        (data_dir / name).write_bytes(b"not the dataset")
    with pytest.raises(SystemExit, match="has SHA-256"):
        fashion_mnist.fetch(tmp_path)


def test_per_class_samples_are_disjoint_and_balanced():
    labels = np.repeat(np.arange(10), 50)
    rng = np.random.default_rng(0)
    train = fashion_mnist.take_per_class(labels, fashion_mnist.TARGET_CLASSES, 20, rng)
    val = fashion_mnist.take_per_class(labels, fashion_mnist.TARGET_CLASSES, 10, rng, exclude=train)
    assert not set(train) & set(val)
    assert np.bincount(labels[train], minlength=10).tolist() == [0] * 5 + [20] * 5
    assert np.bincount(labels[val], minlength=10).tolist() == [0] * 5 + [10] * 5


def test_target_task_is_written_as_an_image_folder(tmp_path):
    from torchvision.datasets import ImageFolder

    root = fashion_mnist.target_image_folders(tmp_path / "target", 4, 2, 3, seed=0)
    train, test = ImageFolder(str(root / "train")), ImageFolder(str(root / "test"))
    assert train.classes == sorted(fashion_mnist.CLASS_NAMES[c] for c in fashion_mnist.TARGET_CLASSES)
    assert len(train) == 20 and len(ImageFolder(str(root / "val"))) == 10 and len(test) == 15
    assert train[0][0].size == (28, 28)
