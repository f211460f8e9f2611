"""Train the MNIST digit CNN and export it.

    python -m training.mnist --out artifacts/mnist                       # the full run (30 epochs)
    python -m training.mnist --epochs 2 --limit 1000 --out /tmp/mnist   # a quick run (tests: see catalog)
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from handlers.transforms import digits
from handlers.transforms.images import decode_image
from training.catalog import CATALOG
from training.data import handwritten
from training.data.mnist import DATASET_NAME, heldout_requests, load_mnist_digits, mnist_splits
from training.data.splits import limit_per_split
from training.engine import TrainConfig, fit
from training.export import export_model, sha256_of_arrays
from training.heldout import OfflineHeldout, eager_probabilities, load_metadata, load_state_dict
from training.optimize import QuantizationPlan, heldout_accuracy, shipped_model


class DigitNet(nn.Module):
    """The PyTorch MNIST example's CNN with batch norm: conv32 -> conv64 -> pool -> fc128 -> fc10."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(2), nn.Dropout(0.25),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 12 * 12, 128), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def random_stroke_width(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Thicken (grey dilation), thin (erosion) or keep the strokes, a third of the time each:
    pens differ from MNIST's."""
    choice = int(torch.randint(3, (1,), generator=generator))
    if choice == 0:
        return pixels
    image = pixels.float().unsqueeze(0)
    image = F.max_pool2d(image, 3, 1, 1) if choice == 1 else -F.max_pool2d(-image, 3, 1, 1)
    return image.squeeze(0).to(torch.uint8)


class DigitDataset(Dataset):
    """uint8 digits in MNIST's convention -> normalised tensors via the serving code."""

    def __init__(self, pixels, labels, augment_probability: float = 0.0, seed: int = 0):
        self.pixels = torch.as_tensor(pixels).unsqueeze(1)  # (N, 1, 28, 28) uint8
        self.labels = torch.as_tensor(labels)
        # Small rotations, shifts, scale and shear: people do not write like MNIST's writers. Some
        # digits stay as they are, so the model still sees MNIST's own look.
        self.affine = v2.RandomAffine(degrees=12, translate=(0.1, 0.1), scale=(0.85, 1.1), shear=10)
        self.augment_probability = augment_probability
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        pixels = self.pixels[index]
        if float(torch.rand(1, generator=self.generator)) < self.augment_probability:
            pixels = self.affine(random_stroke_width(pixels, self.generator))
        return digits.pixels_to_tensor(pixels[0].numpy()), self.labels[index]


def normalize_all(pixels: np.ndarray) -> np.ndarray:
    """Run every training digit through the handler's preprocessing (crop, scale, centre)."""
    return np.stack([digits.normalize_digit(Image.fromarray(p)) for p in pixels])


@torch.inference_mode()
def accuracy_on_images(model: nn.Module, images, labels: np.ndarray) -> float:
    """Accuracy through the served path: PIL image or encoded bytes -> image_to_tensor -> model."""
    decoded = [decode_image(i, 1 << 22, 1 << 22) if isinstance(i, bytes) else i for i in images]
    batch = torch.stack([digits.image_to_tensor(image) for image in decoded])
    return float((model.eval()(batch).argmax(1).numpy() == labels).mean())


def robustness_report(model: nn.Module, mnist_test_pixels: np.ndarray, mnist_test_labels: np.ndarray) -> dict:
    """Accuracy on digits no training run sees, each through the served preprocessing."""
    other_pixels, other_labels = handwritten.load_sklearn_digits()
    return {
        "sklearn_digits_plain": accuracy_on_images(model, handwritten.as_plain_images(other_pixels), other_labels),
        "sklearn_digits_as_drawn": accuracy_on_images(model, handwritten.as_drawn_by_people(other_pixels),
                                                      other_labels),
        "mnist_test_inverted": accuracy_on_images(model, handwritten.inverted(mnist_test_pixels), mnist_test_labels),
        "n_sklearn_digits": int(len(other_labels)),
        "source": handwritten.DATASET_NAME,
    }


def offline_heldout(artifact_dir: Path) -> OfflineHeldout:
    """The exported state_dict, eager, on every test digit through the training pipeline's dataset."""
    seed = load_metadata(artifact_dir)["train_config"]["seed"]
    raw_pixels, labels = load_mnist_digits()
    test = mnist_splits(labels, seed).test
    dataset = DigitDataset(normalize_all(raw_pixels[test]), labels[test])
    model = shipped_model(artifact_dir, "mnist", load_state_dict(DigitNet(), artifact_dir, "mnist"))
    return OfflineHeldout(heldout_requests(None, seed), eager_probabilities(model, DataLoader(dataset, batch_size=256)),
                          digits.CLASS_NAMES)


def quantization_plan(artifact_dir: Path, calibration_digits: int = 1024) -> QuantizationPlan:
    """Static int8, calibrated on training digits, judged on the test split."""
    seed = load_metadata(artifact_dir)["train_config"]["seed"]
    raw_pixels, labels = load_mnist_digits()
    splits = mnist_splits(labels, seed)
    test = DataLoader(DigitDataset(normalize_all(raw_pixels[splits.test]), labels[splits.test]), batch_size=256)
    calibration = splits.train[:calibration_digits]
    calibration = DigitDataset(normalize_all(raw_pixels[calibration]), labels[calibration])
    batch_size = CATALOG["mnist"].model_config()["batchSize"]
    batches = [inputs for inputs, _ in DataLoader(calibration, batch_size=batch_size)]
    return QuantizationPlan(load_state_dict(DigitNet(), artifact_dir, "mnist"), "static", (batches[0],),
                            lambda model: heldout_accuracy(model, test), calibration=batches,
                            sensitive_layers=("features.0", "classifier.4"))


def reported_figures(record: dict) -> dict[str, float]:
    """The README's accuracy figures, from one run's metadata.json."""
    robustness = record["robustness"]
    return {"MNIST held-out test split": record["test"]["accuracy"],
            "the same digits inverted (dark ink on white)": robustness["mnist_test_inverted"],
            "scikit-learn `load_digits`, scaled into 28x28": robustness["sklearn_digits_plain"],
            "the same digits as people send them (ink on paper, off-centre, JPEG)":
                robustness["sklearn_digits_as_drawn"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--limit", type=int, default=None, help="train on at most this many digits")
    parser.add_argument("--augment-probability", type=float, default=0.5,
                        help="share of training digits given a random affine and stroke width (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("artifacts/mnist"))
    args = parser.parse_args(argv)

    raw_pixels, labels = load_mnist_digits()
    pixels = normalize_all(raw_pixels)
    splits = limit_per_split(mnist_splits(labels, args.seed), args.limit, args.seed)
    train_set = DigitDataset(pixels[splits.train], labels[splits.train], args.augment_probability, args.seed)
    val_set = DigitDataset(pixels[splits.val], labels[splits.val])
    test_set = DigitDataset(pixels[splits.test], labels[splits.test])

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=4, seed=args.seed)
    model = DigitNet()
    history = fit(model, train_set, val_set, config, args.out)
    robustness = robustness_report(model.cpu(), raw_pixels[splits.test], labels[splits.test])

    record = export_model(
        model, "mnist", args.out, DataLoader(test_set, batch_size=256), digits.CLASS_NAMES,
        metadata={
            "dataset": {"name": DATASET_NAME, "splits": splits.sizes(), "split_sha256": splits.fingerprints(),
                        "train_sha256": sha256_of_arrays(pixels[splits.train], labels[splits.train])},
            "input": {"kind": "image", "formats": ["PNG", "JPEG"], "model_input": "float32 (N, 1, 28, 28)",
                      "normalisation": {"mean": digits.MEAN, "std": digits.STD}},
            "train_config": asdict(config) | {"augment_probability": args.augment_probability},
            "history": {"epochs_run": len(history.val_loss), "best_epoch": history.best_epoch},
            "robustness": robustness,
        },
    )
    print(f"mnist test accuracy {record['test']['accuracy']:.4f} on {record['test']['n']} held-out digits; "
          + ", ".join(f"{k} {v:.4f}" for k, v in robustness.items() if isinstance(v, float)))
    return record


if __name__ == "__main__":
    main()
