"""Fashion-MNIST (Zalando, MIT): 70,000 real 28x28 grayscale photos of clothes in 10 classes.

It ships in Debian's `dataset-fashion-mnist` package, which this module fetches without root
(`apt-get download` + `dpkg-deb -x`) into the git-ignored data_cache/ on first use. The offline
transfer-learning demo splits its classes in two: a source task to pretrain on (0-4) and a
target task to fine-tune on with a small labelled budget (5-9).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from handlers.transforms.images import png_bytes
from training.data.splits import Splits, fingerprint
from training.heldout import Sample, evenly_spread

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "data_cache"
PACKAGE = "dataset-fashion-mnist"
DATA_DIR = "usr/share/datasets/fashion-mnist"
DATASET_NAME = f"Fashion-MNIST (Debian package {PACKAGE})"
CLASS_NAMES = ["T-shirt/top", "trouser", "pullover", "dress", "coat",
               "sandal", "shirt", "sneaker", "bag", "ankle boot"]
SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
SPLIT_FINGERPRINTS = "split_sha256.json"  # written beside the target task's folders
# SHA-256 of the files in Debian's package (0.0~git20200523.55506a9-1), so a corrupted or
# different download is caught before training.
IDX_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}


def _apt_get(args: list[str], cwd: Path, lists: Path | None = None) -> subprocess.CompletedProcess:
    options = ["-o", f"Dir::State::Lists={lists}"] if lists else []
    return subprocess.run(["apt-get", *options, *args], cwd=cwd, capture_output=True, text=True)


def download_package(workdir: Path) -> Path:
    """`apt-get download` the .deb into `workdir`; with empty package lists (fresh containers),
    first refresh them into a private folder, which needs no root."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SystemExit(f"Fashion-MNIST comes from the Debian package {PACKAGE}, and apt-get/dpkg-deb are "
                         f"missing here. On a Debian/Ubuntu machine run `apt-get download {PACKAGE}`, then "
                         f"`dpkg-deb -x <file>.deb {CACHE / 'fashion-mnist'}` here.")
    result = _apt_get(["download", PACKAGE], workdir)
    if result.returncode != 0:
        lists = workdir / "lists"
        (lists / "partial").mkdir(parents=True)
        update = _apt_get(["update"], workdir, lists)
        result = _apt_get(["download", PACKAGE], workdir, lists)
        if result.returncode != 0:
            raise SystemExit(f"apt-get could not download {PACKAGE}:\n{update.stderr}{result.stderr}")
    return next(workdir.glob(f"{PACKAGE}_*.deb"))


def fetch(cache: Path = CACHE) -> Path:
    """The folder with Fashion-MNIST's idx files, downloaded and checked on first use."""
    data_dir = cache / "fashion-mnist" / DATA_DIR
    if not all((data_dir / name).exists() for name in IDX_SHA256):
        with tempfile.TemporaryDirectory() as workdir:
            deb = download_package(Path(workdir))
            (cache / "fashion-mnist").mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(cache / "fashion-mnist")], check=True)
    for name, expected in IDX_SHA256.items():
        digest = hashlib.sha256((data_dir / name).read_bytes()).hexdigest()
        if digest != expected:
            raise SystemExit(f"{data_dir / name} has SHA-256 {digest}, expected {expected}: "
                             f"delete {cache / 'fashion-mnist'} and retry")
    return data_dir


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip): big-endian header of dimension sizes, then uint8 data."""
    raw = gzip.decompress(path.read_bytes())
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(part: str, cache: Path = CACHE) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 28, 28) and int64 labels of `part` ("train": 60,000, "t10k": 10,000)."""
    data_dir = fetch(cache)
    images = read_idx(data_dir / f"{part}-images-idx3-ubyte.gz")
    labels = read_idx(data_dir / f"{part}-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels


def take_per_class(labels: np.ndarray, classes, per_class: int | None, rng: np.random.Generator,
                   exclude: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of `per_class` random examples of each class in `classes` (all when None),
    never one of `exclude`."""
    available = np.ones(len(labels), dtype=bool)
    if exclude is not None:
        available[exclude] = False
    chosen = []
    for cls in classes:
        candidates = rng.permutation(np.flatnonzero((labels == cls) & available))
        chosen.append(candidates if per_class is None else candidates[:per_class])
    return np.sort(np.concatenate(chosen))


def write_image_folder(root: Path, images: np.ndarray, labels: np.ndarray, class_names: list[str]) -> None:
    """PNG files in torchvision's ImageFolder layout: root/<class name>/<index>.png."""
    from PIL import Image

    for index, (pixels, label) in enumerate(zip(images, labels)):
        folder = root / class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{index:05d}.png")


def target_image_folders(root: Path, budget_per_class: int, val_per_class: int, test_per_class: int | None,
                         seed: int) -> Path:
    """The fine-tuning task as a user would have it: root/{train,val,test}/<class>/*.png.

    train holds `budget_per_class` labelled images per target class and val another disjoint
    `val_per_class`, both from Fashion-MNIST's training part; test is its separate test part
    (all 1,000 per class unless `test_per_class`). Written once per configuration.
    """
    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(seed)
    train_images, train_labels = load("train")
    test_images, test_labels = load("t10k")
    train = take_per_class(train_labels, TARGET_CLASSES, budget_per_class, rng)
    val = take_per_class(train_labels, TARGET_CLASSES, val_per_class, rng, exclude=train)
    test = take_per_class(test_labels, TARGET_CLASSES, test_per_class, rng)
    Splits(train, val, [])  # refuses an image in both
    root.mkdir(parents=True, exist_ok=True)
    (root / SPLIT_FINGERPRINTS).write_text(json.dumps(
        {"train": fingerprint(train), "val": fingerprint(val), "test (indices into t10k)": fingerprint(test)}))
    for part, images, labels in (("train", train_images[train], train_labels[train]),
                                 ("val", train_images[val], train_labels[val]),
                                 ("test", test_images[test], test_labels[test])):
        shutil.rmtree(root / part, ignore_errors=True)
        write_image_folder(root / part, images, labels, CLASS_NAMES)
    done.touch()
    return root


def heldout_requests(count: int | None = None) -> list[Sample]:
    """Photos of the fine-tuning classes from the test part (training reads only the training
    part) as the PNGs a client sends, spread over the classes."""
    images, labels = load("t10k")
    target = np.flatnonzero(np.isin(labels, TARGET_CLASSES))
    ordered = target[np.argsort(labels[target], kind="stable")]  # by class, so a spread covers every class
    return [Sample(png_bytes(images[i]), "image/png", CLASS_NAMES[labels[i]]) for i in evenly_spread(ordered, count)]
