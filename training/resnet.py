"""Transfer-learn torchvision's ResNet-18 on labelled images, export it, compare with scratch.

Your own images, one folder per class (torchvision ImageFolder) under DIR/train, DIR/val, DIR/test:
    python -m training.resnet --data DIR --weights imagenet --image-size 224 --out artifacts/resnet
    python -m training.resnet --data DIR --weights my_resnet18.pt ...   # any torchvision ResNet-18 state_dict

The offline default (`make train`, no --data): pretrain on Fashion-MNIST classes 0-4 (the local
stand-in for ImageNet weights, cached in artifacts/pretrained/), fine-tune on classes 5-9 with
50 labelled images per class, and train the same budget from scratch to show what transfer buys:
    python -m training.resnet --out artifacts/resnet

Transfer runs in two stages: the new head alone with the backbone frozen, then (unless
--finetune-epochs 0) every layer at a lower learning rate for the backbone.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets
from torchvision.models import ResNet, ResNet18_Weights, resnet18
from torchvision.transforms import v2

from handlers.transforms import vision
from handlers.transforms.images import to_rgb
from training.catalog import CATALOG
from training.data import fashion_mnist
from training.engine import TrainConfig, evaluate, fit
from training.export import export_model
from training.heldout import OfflineHeldout, Sample, eager_probabilities, load_metadata, load_state_dict
from training.optimize import QuantizationPlan, heldout_accuracy, shipped_model

REPO = Path(__file__).resolve().parents[1]


# --- the model and its weights ---------------------------------------------------------------
def load_backbone_weights(model: ResNet, path: Path) -> None:
    """Load a torchvision-compatible ResNet-18 state_dict into `model`, except its `fc`, whose
    shape belongs to the task the weights were trained on."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    backbone = {key: value for key, value in state.items() if not key.startswith("fc.")}
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    if unexpected or set(missing) != {"fc.weight", "fc.bias"}:
        raise SystemExit(f"{path} is not a torchvision ResNet-18 state_dict: "
                         f"missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}")


def build_resnet18(num_classes: int, weights: str) -> ResNet:
    """ResNet-18 with `weights` ("imagenet", "none" or a state_dict path) and a new `num_classes` head."""
    if weights == "imagenet":  # from torch's cache ($TORCH_HOME), downloaded once where allowed
        model = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
    else:
        model = resnet18()
        if weights != "none":
            load_backbone_weights(model, Path(weights))
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def set_backbone_trainable(model: ResNet, trainable: bool) -> None:
    """Freeze or unfreeze every parameter but the head's."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad = trainable or name.startswith("fc.")


# --- data ------------------------------------------------------------------------------------
def train_transform(image_size: int) -> v2.Compose:
    """Random resized crop, horizontal flip and a small rotation, then the served normalisation."""
    return v2.Compose([v2.ToImage(), v2.RandomResizedCrop(image_size, scale=(0.6, 1.0), antialias=True),
                       v2.RandomHorizontalFlip(), v2.RandomRotation(10), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(vision.MEAN, vision.STD)])


class ArrayImages(Dataset):
    """uint8 images (N, H, W[, C]) in memory, through the same PIL path as image files."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, torch.as_tensor(labels), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.transform(to_rgb(Image.fromarray(self.images[index]))), self.labels[index]


def image_folder(root: Path, transform) -> datasets.ImageFolder:
    if not root.is_dir():
        raise SystemExit(f"{root} is missing: --data needs train/, val/ and test/ folders, one subfolder per class")
    return datasets.ImageFolder(str(root), transform=transform, loader=lambda path: to_rgb(Image.open(path)))


# --- training --------------------------------------------------------------------------------
@dataclass
class TransferPlan:
    image_size: int = 32
    batch_size: int = 64
    head_epochs: int = 4
    head_lr: float = 3e-3
    finetune_epochs: int = 10
    finetune_lr: float = 1e-3  # the backbone's; the head gets 10x
    scratch_lr: float = 1e-3
    seed: int = 0


def train_config(plan: TransferPlan, epochs: int, lr: float) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=plan.batch_size, lr=lr, patience=4, seed=plan.seed)


def train_head(model: ResNet, train_set, val_set, plan: TransferPlan, out_dir: Path) -> None:
    """The head alone on the frozen backbone's features."""
    set_backbone_trainable(model, False)
    fit(model, train_set, val_set, train_config(plan, plan.head_epochs, plan.head_lr), out_dir)


def transfer(model: ResNet, train_set, val_set, plan: TransferPlan, out_dir: Path, test_set) -> float:
    """Stage 1: the head alone, backbone frozen. Stage 2: everything, the backbone at a lower LR.
    Returns the test accuracy after stage 1: how well the frozen features alone serve the task."""
    train_head(model, train_set, val_set, plan, out_dir / "head")
    frozen_features = test_accuracy(model, test_set)
    if plan.finetune_epochs:
        set_backbone_trainable(model, True)
        head = list(model.fc.parameters())
        backbone = [p for name, p in model.named_parameters() if not name.startswith("fc.")]
        groups = [{"params": backbone, "lr": plan.finetune_lr}, {"params": head, "lr": plan.finetune_lr * 10}]
        fit(model, train_set, val_set, train_config(plan, plan.finetune_epochs, plan.finetune_lr),
            out_dir / "finetune", param_groups=groups)
    return frozen_features


def frozen_random_features(num_classes: int, train_set, val_set, plan: TransferPlan, out_dir: Path, test_set) -> float:
    """Stage 1 on a random backbone: what the head learns without any pretrained features."""
    model = build_resnet18(num_classes, "none")
    train_head(model, train_set, val_set, plan, out_dir / "random-head")
    return test_accuracy(model, test_set)


def from_scratch(num_classes: int, train_set, val_set, plan: TransferPlan, out_dir: Path) -> ResNet:
    """The same data and epochs with random weights: the baseline transfer must beat."""
    model = build_resnet18(num_classes, "none")
    fit(model, train_set, val_set, train_config(plan, plan.head_epochs + plan.finetune_epochs, plan.scratch_lr),
        out_dir / "scratch")
    return model


def test_accuracy(model: nn.Module, test_set, batch_size: int = 256) -> float:
    return evaluate(model, DataLoader(test_set, batch_size=batch_size), next(model.parameters()).device)["accuracy"]


def pretrain_on_source(out_dir: Path, plan: TransferPlan, per_class: int, epochs: int) -> tuple[Path, dict]:
    """Train ResNet-18 from scratch on Fashion-MNIST's source classes (0-4) and save its state_dict
    with torchvision's key names. Cached per configuration: later runs reuse it."""
    name = f"resnet18_fashion0-4_{plan.image_size}px_{per_class}x{epochs}_seed{plan.seed}"
    weights, record_path = out_dir / f"{name}.pt", out_dir / f"{name}.json"
    if weights.exists() and record_path.exists():
        return weights, json.loads(record_path.read_text())
    started = time.perf_counter()
    rng = np.random.default_rng(plan.seed)
    images, labels = fashion_mnist.load("train")
    chosen = fashion_mnist.take_per_class(labels, fashion_mnist.SOURCE_CLASSES, per_class, rng)
    val = fashion_mnist.take_per_class(labels, fashion_mnist.SOURCE_CLASSES, max(per_class // 10, 20), rng,
                                       exclude=chosen)
    train_set = ArrayImages(images[chosen], labels[chosen], train_transform(plan.image_size))
    val_set = ArrayImages(images[val], labels[val], vision.eval_transform(plan.image_size))
    model = build_resnet18(len(fashion_mnist.SOURCE_CLASSES), "none")
    history = fit(model, train_set, val_set, train_config(plan, epochs, plan.scratch_lr), out_dir / f"{name}-run")
    torch.save(model.state_dict(), weights)
    record = {"weights": weights.name,
              "task": "Fashion-MNIST classes 0-4 (" + ", ".join(fashion_mnist.CLASS_NAMES[:5]) + ")",
              "train_images": int(len(chosen)), "epochs": epochs,
              "val_accuracy": history.val_accuracy[history.best_epoch - 1],
              "seconds": round(time.perf_counter() - started, 1)}
    record_path.write_text(json.dumps(record, indent=2))
    return weights, record


def split_fingerprints(data_root: Path) -> dict | None:
    """The offline demo's split fingerprints; an ImageFolder of yours has none."""
    path = data_root / fashion_mnist.SPLIT_FINGERPRINTS
    return json.loads(path.read_text()) if path.exists() else None


def reported_figures(record: dict) -> dict[str, float]:
    """The README's figures: transfer against scratch on the held-out test images."""
    comparison = record["transfer_vs_scratch"]
    figures = {"transfer-learned, held-out test images": comparison["transfer"]}
    if "scratch" in comparison:
        figures["the same budget from scratch"] = comparison["scratch"]
        figures["gain of transfer over scratch (points)"] = comparison["transfer"] - comparison["scratch"]
    if "frozen_features" in comparison:
        figures["a head on frozen pretrained features"] = comparison["frozen_features"]["pretrained"]
        figures["a head on frozen random features"] = comparison["frozen_features"]["random"]
    return figures


def heldout_requests(count: int | None = None) -> list[Sample]:
    """The offline demo's held-out photos (Fashion-MNIST's test part, fine-tuning classes) as PNGs."""
    return fashion_mnist.heldout_requests(count)


def offline_heldout(artifact_dir: Path) -> OfflineHeldout:
    """The exported state_dict, eager, on every image of the test ImageFolder it was evaluated on;
    the samples are those image files as a client would send them."""
    record = load_metadata(artifact_dir)
    transform = vision.eval_transform(record["input"]["image_size"])
    test_set = image_folder(REPO / record["dataset"]["test_folder"], transform)
    model = shipped_model(artifact_dir, "resnet",
                          load_state_dict(build_resnet18(len(record["classes"]), "none"), artifact_dir, "resnet"))
    samples = [Sample(Path(path).read_bytes(), "application/octet-stream", test_set.classes[label])
               for path, label in test_set.samples]
    return OfflineHeldout(samples, eager_probabilities(model, DataLoader(test_set, batch_size=256)), record["classes"])


def quantization_plan(artifact_dir: Path) -> QuantizationPlan:
    """Static int8, calibrated on the fine-tuning images (train split, eval transform), judged on
    every test image."""
    record = load_metadata(artifact_dir)
    transform = vision.eval_transform(record["input"]["image_size"])
    test_folder = REPO / record["dataset"]["test_folder"]
    test = DataLoader(image_folder(test_folder, transform), batch_size=256)
    batch_size = CATALOG["resnet"].model_config()["batchSize"]
    batches = [inputs for inputs, _ in DataLoader(image_folder(test_folder.parent / "train", transform),
                                                  batch_size=batch_size, shuffle=True,
                                                  generator=torch.Generator().manual_seed(0))]
    return QuantizationPlan(load_state_dict(build_resnet18(len(record["classes"]), "none"), artifact_dir, "resnet"),
                            "static", (batches[0],), lambda model: heldout_accuracy(model, test),
                            calibration=batches, sensitive_layers=("conv1", "fc"))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="ImageFolder root with train/ val/ test/ (default: the offline demo)")
    parser.add_argument("--weights", help='"imagenet", "none" or a ResNet-18 state_dict path '
                                          "(default: the offline demo's Fashion-MNIST pretraining)")
    parser.add_argument("--compare-scratch", action="store_true",
                        help="also train from scratch on the same data (always on in the offline demo)")
    defaults = TransferPlan()
    for field, value in asdict(defaults).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
    demo = parser.add_argument_group("offline demo (Fashion-MNIST)")
    demo.add_argument("--budget", type=int, default=50, help="labelled fine-tuning images per target class")
    demo.add_argument("--val-per-class", type=int, default=50)
    demo.add_argument("--test-per-class", type=int, default=None, help="default: all 1,000 held-out per class")
    demo.add_argument("--pretrain-per-class", type=int, default=2000)
    demo.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "resnet")
    args = parser.parse_args(argv)
    plan = TransferPlan(**{field: getattr(args, field) for field in asdict(defaults)})

    pretraining = None
    if args.data is None:  # the offline demo: pretrain (cached), then fine-tune on the target task
        weights, pretraining = pretrain_on_source(args.out.parent / "pretrained", plan, args.pretrain_per_class,
                                                  args.pretrain_epochs)
        data_root = fashion_mnist.target_image_folders(
            REPO / "data_cache" / f"fashion-mnist-target-{args.budget}-{args.val_per_class}-"
                                  f"{args.test_per_class or 'all'}-seed{plan.seed}",
            args.budget, args.val_per_class, args.test_per_class, plan.seed)
        args.weights, args.compare_scratch = args.weights or str(weights), True
        dataset_name = f"{fashion_mnist.DATASET_NAME}: classes 5-9, {args.budget} labelled images per class"
    else:
        data_root, dataset_name = args.data, str(args.data)
    weights = args.weights or "imagenet"

    train_set = image_folder(data_root / "train", train_transform(plan.image_size))
    val_set = image_folder(data_root / "val", vision.eval_transform(plan.image_size))
    test_set = image_folder(data_root / "test", vision.eval_transform(plan.image_size))
    class_names = train_set.classes

    started = time.perf_counter()
    model = build_resnet18(len(class_names), weights)
    frozen_features = transfer(model, train_set, val_set, plan, args.out, test_set)
    transfer_seconds = time.perf_counter() - started
    comparison = {"transfer": test_accuracy(model, test_set)}
    if args.compare_scratch:
        scratch = from_scratch(len(class_names), train_set, val_set, plan, args.out)
        comparison["scratch"] = test_accuracy(scratch, test_set)
        comparison["gain_points"] = round(100 * (comparison["transfer"] - comparison["scratch"]), 1)
        # A head on frozen features, pretrained vs random: does the pretraining carry to the new task?
        comparison["frozen_features"] = {
            "pretrained": frozen_features,
            "random": frozen_random_features(len(class_names), train_set, val_set, plan, args.out, test_set)}

    (args.out / "index_to_name.json").write_text(json.dumps({str(i): n for i, n in enumerate(class_names)}, indent=2))
    record = export_model(
        model.cpu(), "resnet", args.out, DataLoader(test_set, batch_size=256), class_names,
        metadata={
            "dataset": {"name": dataset_name, "splits": {"train": len(train_set), "val": len(val_set),
                                                         "test": len(test_set)},
                        "test_folder": str(Path(os.path.relpath((data_root / "test").resolve(), REPO))),
                        "split_sha256": split_fingerprints(data_root)},
            "input": {"kind": "image", "formats": ["PNG", "JPEG"], "image_size": plan.image_size,
                      "model_input": f"float32 (N, 3, {plan.image_size}, {plan.image_size})",
                      "normalisation": {"mean": vision.MEAN, "std": vision.STD}},
            "weights": weights if weights in ("imagenet", "none") else Path(weights).name,
            "pretraining": pretraining,
            "plan": asdict(plan),
            "transfer_vs_scratch": comparison,
            "seconds": {"transfer": round(transfer_seconds, 1),
                        "pretraining": pretraining["seconds"] if pretraining else None},
        },
    )
    print(f"resnet test accuracy {record['test']['accuracy']:.4f} on {record['test']['n']} held-out images; "
          + ", ".join(f"{k} {v}" for k, v in comparison.items() if not isinstance(v, dict)))
    return record


if __name__ == "__main__":
    main()
