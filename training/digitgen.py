"""Train the conditional DCGAN that draws digits on request, export its generator, judge it.

    python -m training.digitgen --out artifacts/digitgen                       # the full run
    python -m training.digitgen --epochs 3 --limit 1000 --out /tmp/digitgen   # a quick run (tests: see catalog)

It learns from the training split of the same 5,000 MNIST digits as the mnist classifier. The
quality report judges 1,000 generated digits per class with the service's own mnist classifier
(`--judge`, the artifact folder `make train` wrote): class fidelity, diversity against the
held-out real digits, and a Fréchet distance on the classifier's penultimate-layer features.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from handlers.transforms import digits, generation
from handlers.transforms.images import png_bytes
from training.catalog import REPO
from training.data.mnist import DATASET_NAME, load_mnist_digits, mnist_splits
from training.data.splits import limit_per_split
from training.engine import GanConfig, fit_gan
from training.export import export_torchscript, sha256_of_arrays, write_metadata
from training.heldout import Sample, load_metadata, load_state_dict
from training.mnist import DigitNet
from training.optimize import shipped_model

GRID_SEED = 2026  # the same noise for every epoch's sample grid
QUALITY_SEED = 1_000_000  # quality noise seeds start here: far from the grid's and the held-out requests'


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: weights N(0, 0.02), batch norm scales N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


class DigitGenerator(nn.Module):
    """DCGAN's generator for 28x28, conditioned on the digit: noise and a label embedding ->
    7x7 -> 14x14 -> 28x28 by strided transposed convolutions with batch norm and ReLU, then a
    3x3 convolution and tanh."""

    def __init__(self, noise_dim: int = generation.NOISE_DIM, width: int = 32,
                 num_classes: int = generation.NUM_CLASSES):
        super().__init__()
        self.width = width
        self.label_embedding = nn.Embedding(num_classes, 16)
        self.project = nn.Sequential(nn.Linear(noise_dim + 16, width * 4 * 7 * 7, bias=False),
                                     nn.BatchNorm1d(width * 4 * 7 * 7), nn.ReLU(inplace=True))
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(width * 4, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width * 2, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, 1, 3, padding=1), nn.Tanh(),
        )
        self.apply(dcgan_init)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.project(torch.cat([noise, self.label_embedding(labels)], dim=1))
        return self.upsample(features.view(-1, self.width * 4, 7, 7))


class DigitDiscriminator(nn.Module):
    """DCGAN's discriminator (strided convolutions, LeakyReLU, batch norm after the first layer)
    with a projection head (Miyato and Koyama, 2018): the logit gains <embedding(label), features>."""

    def __init__(self, width: int = 64, num_classes: int = generation.NUM_CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(), nn.Dropout(0.3),
        )
        self.score = nn.Linear(width * 2 * 7 * 7, 1)
        self.projection = nn.Embedding(num_classes, width * 2 * 7 * 7)
        self.apply(dcgan_init)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.features(images)
        return self.score(features).squeeze(1) + (self.projection(labels) * features).sum(dim=1)


@torch.inference_mode()
def generate(generator: nn.Module, digit: int, count: int, seed: int) -> np.ndarray:
    """What the service answers for {"digit", "count", "seed"}: uint8 digits (count, 28, 28)."""
    labels = torch.full((count,), digit, dtype=torch.long)
    return generation.to_pixels(generator(generation.noise(seed, count), labels))


def sample_grid(generator: nn.Module, per_digit: int = 10) -> np.ndarray:
    """One row per digit, the same noise in every epoch."""
    rows = [generate(generator, digit, per_digit, GRID_SEED) for digit in range(generation.NUM_CLASSES)]
    return generation.grid(np.concatenate(rows), columns=per_digit)


# --- quality, judged by the service's classifier ----------------------------------------------
class Judge:
    """The mnist classifier of the service: its shipped variant labels digits, its eager fp32 form
    gives the penultimate-layer features (128 per digit). Digits go through the served
    preprocessing, as a client's PNG would."""

    def __init__(self, artifact_dir: Path):
        self.eager = load_state_dict(DigitNet(), artifact_dir, "mnist")
        self.shipped = shipped_model(artifact_dir, "mnist", self.eager)
        self.penultimate = nn.Sequential(self.eager.features, *self.eager.classifier[:-1]).eval()

    @staticmethod
    def inputs(pixels: np.ndarray) -> torch.Tensor:
        return torch.stack([digits.image_to_tensor(Image.fromarray(p)) for p in pixels])

    @torch.inference_mode()
    def labels_and_features(self, pixels: np.ndarray, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
        labels, features = [], []
        for start in range(0, len(pixels), batch):
            inputs = self.inputs(pixels[start:start + batch])
            labels.append(self.shipped(inputs).argmax(1).numpy())
            features.append(self.penultimate(inputs).numpy())
        return np.concatenate(labels), np.concatenate(features).astype(np.float64)


def frechet_distance(first: np.ndarray, second: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^1/2) between two sets of feature vectors. The
    trace of the root is that of (C1^1/2 C2 C1^1/2)^1/2, symmetric: eigenvalues, no complex parts
    from dead (always zero) features."""
    mean_delta = first.mean(0) - second.mean(0)
    cov_first, cov_second = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    values, vectors = np.linalg.eigh(cov_first)
    root_first = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    middle = np.linalg.eigvalsh(root_first @ cov_second @ root_first).clip(min=0)
    return float(mean_delta @ mean_delta + np.trace(cov_first) + np.trace(cov_second) - 2 * np.sqrt(middle).sum())


def mean_pairwise_distance(pixels: np.ndarray) -> float:
    """Mean L2 distance between distinct digits, pixels scaled to [0, 1]."""
    flat = torch.as_tensor(pixels, dtype=torch.float32).flatten(1) / 255
    distances = torch.cdist(flat, flat)
    return float(distances.sum() / (len(flat) * (len(flat) - 1)))


def quality_report(generator: nn.Module, judge: Judge, real_pixels: np.ndarray, real_labels: np.ndarray,
                   train_pixels: np.ndarray, per_class: int) -> dict:
    """Fidelity and diversity per digit, and the Fréchet distance on the judge's features, for
    `per_class` generated digits of each class against held-out real digits."""
    generated = np.concatenate([generate(generator, digit, per_class, QUALITY_SEED + digit)
                                for digit in range(generation.NUM_CLASSES)])
    requested = np.repeat(np.arange(generation.NUM_CLASSES), per_class)
    judged, generated_features = judge.labels_and_features(generated)
    real_judged, real_features = judge.labels_and_features(real_pixels)
    _, train_features = judge.labels_and_features(train_pixels)
    per_digit = {}
    for digit in range(generation.NUM_CLASSES):
        mine = requested == digit
        diversity = mean_pairwise_distance(generated[mine])
        real_diversity = mean_pairwise_distance(real_pixels[real_labels == digit])
        per_digit[str(digit)] = {"fidelity": float((judged[mine] == digit).mean()), "diversity": diversity,
                                 "real_diversity": real_diversity, "diversity_ratio": diversity / real_diversity}
    ratios = [figures["diversity_ratio"] for figures in per_digit.values()]
    fidelities = [figures["fidelity"] for figures in per_digit.values()]
    return {
        "generated_per_class": per_class,
        "real_heldout_digits": int(len(real_labels)),
        "judge": "the service's mnist classifier (shipped variant labels; fp32 penultimate layer, 128 features)",
        "judge_accuracy_on_real_heldout": float((real_judged == real_labels).mean()),
        "fidelity_min": min(fidelities), "fidelity_mean": float(np.mean(fidelities)),
        "diversity_ratio_min": min(ratios), "diversity_ratio_max": max(ratios),
        "frechet_distance_classifier_features": frechet_distance(generated_features, real_features),
        # two samples of real digits: the distance a perfect generator would score, at these sample sizes
        "frechet_distance_real_train_vs_heldout": frechet_distance(train_features, real_features),
        "per_digit": per_digit,
    }


# --- the catalog's hooks -----------------------------------------------------------------------
def heldout_requests(count: int | None = None, images_per_request: int = 1) -> list[Sample]:
    """Client requests {"digit", "count", "seed"} cycling over the digits (100 by default);
    `expected` is the digit."""
    return [Sample(json.dumps({"digit": index % 10, "count": images_per_request, "seed": index}).encode(),
                   "application/json", str(index % 10)) for index in range(100 if count is None else count)]


def offline_generator(artifact_dir: Path) -> nn.Module:
    """The exported state_dict, eager: what `make verify` compares the served images with."""
    width = load_metadata(artifact_dir)["architecture"]["generator_width"]
    return load_state_dict(DigitGenerator(width=width), artifact_dir, "digitgen")


def reported_figures(record: dict) -> dict[str, float]:
    quality = record["quality"]
    return {"class fidelity, worst digit": quality["fidelity_min"], "class fidelity, mean over digits":
            quality["fidelity_mean"], "diversity / real digits', lowest digit": quality["diversity_ratio_min"],
            "diversity / real digits', highest digit": quality["diversity_ratio_max"],
            "Fréchet distance, classifier features": quality["frechet_distance_classifier_features"]}


def figures_table(records: list[tuple[int, dict]]) -> str:
    """The README's quality table: every seed's run, then the shipped run digit by digit."""
    lines = ["| seed | class fidelity: worst digit | mean | diversity / real: lowest digit | highest | "
             "Fréchet distance (classifier features) | same, real vs real | training CPU-minutes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for index, (seed, record) in enumerate(records):
        quality, training = record["quality"], record["training"]
        lines.append(f"| {seed}{' (shipped)' if index == 0 else ''} | {100 * quality['fidelity_min']:.1f} % | "
                     f"{100 * quality['fidelity_mean']:.1f} % | {quality['diversity_ratio_min']:.2f} | "
                     f"{quality['diversity_ratio_max']:.2f} | {quality['frechet_distance_classifier_features']:.1f} | "
                     f"{quality['frechet_distance_real_train_vs_heldout']:.1f} | {training['cpu_seconds'] / 60:.1f} |")
    quality = records[0][1]["quality"]
    lines += ["", f"The shipped run, digit by digit ({quality['generated_per_class']:,} generated digits per class "
              f"against {quality['real_heldout_digits']:,} held-out real digits, of which the judge labels "
              f"{100 * quality['judge_accuracy_on_real_heldout']:.1f} % right):", "",
              "| digit | class fidelity | diversity: generated | real | generated / real |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {digit} | {100 * row['fidelity']:.1f} % | {row['diversity']:.2f} | {row['real_diversity']:.2f} | "
              f"{row['diversity_ratio']:.2f} |" for digit, row in quality["per_digit"].items()]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--generator-width", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="train on at most this many digits")
    parser.add_argument("--quality-per-class", type=int, default=1000, help="generated digits judged per class")
    parser.add_argument("--judge", type=Path, default=REPO / "artifacts" / "mnist",
                        help="artifact folder of the mnist classifier that judges the generated digits")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads: one uses a core fully, two are 1.4x faster but use 2x the CPU time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("artifacts/digitgen"))
    args = parser.parse_args(argv)
    started, cpu_started = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)

    pixels, labels = load_mnist_digits()
    splits = limit_per_split(mnist_splits(labels, args.seed), args.limit, args.seed)
    # The generator never sees the validation or test digits: they are the real reference of the report.
    heldout = np.concatenate([splits.val, splits.test])
    train_set = TensorDataset(generation.to_model_range(pixels[splits.train]), torch.as_tensor(labels[splits.train]))

    config = GanConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       torch_threads=args.threads)
    samples_dir = args.out / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)

    def save_grid(epoch: int, generator: nn.Module) -> None:
        (samples_dir / f"epoch_{epoch:03d}.png").write_bytes(png_bytes(sample_grid(generator)))

    generator, history = fit_gan(DigitGenerator(config.noise_dim, args.generator_width), DigitDiscriminator(),
                                 train_set, config, args.out, after_epoch=save_grid)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    training = {"wall_seconds": time.perf_counter() - started,
                "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu_started.ru_utime - cpu_started.ru_stime,
                "torch_threads": torch.get_num_threads()}
    (args.out / "samples.png").write_bytes(png_bytes(sample_grid(generator)))

    probe = [(generation.noise(seed, 16), torch.arange(16) % 10) for seed in range(3)]
    parity = export_torchscript(generator, "digitgen", args.out, probe)
    quality = quality_report(generator, Judge(args.judge), pixels[heldout], labels[heldout],
                             pixels[splits.train], args.quality_per_class)
    record = write_metadata(args.out, "digitgen", {
        "classes": digits.CLASS_NAMES,
        "dataset": {"name": DATASET_NAME, "splits": splits.sizes(), "split_sha256": splits.fingerprints(),
                    "train_sha256": sha256_of_arrays(pixels[splits.train], labels[splits.train])},
        "architecture": {"generator_width": args.generator_width, "noise_dim": config.noise_dim},
        "input": {"kind": "params", "request": {"digit": "0-9, optional", "count": "1..max_count",
                                                "seed": "optional"},
                  "model_input": "(noise float32 (N, 64), labels int64 (N,))", "model_output": "(N, 1, 28, 28) tanh"},
        "train_config": asdict(config) | {"generator_width": args.generator_width},
        "training": training,
        "history": {"epochs_run": len(history.generator_loss),
                    "final_discriminator_loss": history.discriminator_loss[-1],
                    "final_generator_loss": history.generator_loss[-1]},
        "torchscript_parity_max_abs_delta": parity,
        "quality": quality,
    })
    print(f"digitgen: fidelity min {quality['fidelity_min']:.3f} mean {quality['fidelity_mean']:.3f}, diversity ratio "
          f"{quality['diversity_ratio_min']:.2f}-{quality['diversity_ratio_max']:.2f}, Fréchet "
          f"{quality['frechet_distance_classifier_features']:.2f} (real vs real "
          f"{quality['frechet_distance_real_train_vs_heldout']:.2f}); trained in {training['cpu_seconds']:.0f} CPU-s, "
          f"{training['wall_seconds']:.0f} s wall")
    return record


if __name__ == "__main__":
    main()
