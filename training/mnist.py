"""Train the MNIST digit CNN and export it.

    python -m training.mnist --epochs 15 --out artifacts/mnist
    python -m training.mnist --epochs 2 --limit 1000 --out /tmp/mnist   # the fast test config
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from handlers.transforms import digits
from training.data.mnist import DATASET_NAME, load_mnist_digits, mnist_splits
from training.data.splits import limit_per_split
from training.engine import TrainConfig, fit
from training.export import export_model, sha256_of_arrays


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


class DigitDataset(Dataset):
    """uint8 digits -> normalised tensors through the serving code's `pixels_to_tensor`."""

    def __init__(self, pixels, labels, augment: bool):
        self.pixels = torch.as_tensor(pixels).unsqueeze(1)  # (N, 1, 28, 28) uint8
        self.labels = torch.as_tensor(labels)
        # Small shifts, rotations, scale and shear: people do not centre digits like MNIST does.
        self.augment = v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=8) \
            if augment else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        pixels = self.pixels[index]
        if self.augment is not None:
            pixels = self.augment(pixels)
        return digits.pixels_to_tensor(pixels[0].numpy()), self.labels[index]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--limit", type=int, default=None, help="train on at most this many digits")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("artifacts/mnist"))
    args = parser.parse_args(argv)

    pixels, labels = load_mnist_digits()
    splits = limit_per_split(mnist_splits(labels, args.seed), args.limit, args.seed)
    train_set = DigitDataset(pixels[splits.train], labels[splits.train], augment=not args.no_augment)
    val_set = DigitDataset(pixels[splits.val], labels[splits.val], augment=False)
    test_set = DigitDataset(pixels[splits.test], labels[splits.test], augment=False)

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=4, seed=args.seed)
    model = DigitNet()
    history = fit(model, train_set, val_set, config, args.out)

    record = export_model(
        model, "mnist", args.out, DataLoader(test_set, batch_size=256), digits.CLASS_NAMES,
        metadata={
            "dataset": {"name": DATASET_NAME, "splits": splits.sizes(),
                        "train_sha256": sha256_of_arrays(pixels[splits.train], labels[splits.train])},
            "input": {"kind": "image", "formats": ["PNG", "JPEG"], "model_input": "float32 (N, 1, 28, 28)",
                      "normalisation": {"mean": digits.MEAN, "std": digits.STD}},
            "train_config": asdict(config) | {"augment": not args.no_augment},
            "history": {"epochs_run": len(history.val_loss), "best_epoch": history.best_epoch},
        },
    )
    print(f"mnist test accuracy {record['test']['accuracy']:.4f} on {record['test']['n']} held-out digits")
    return record


if __name__ == "__main__":
    main()
