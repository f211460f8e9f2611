"""Images for torchvision classifiers (ResNet): any size and mode -> a normalised RGB tensor.

Training and the handler build their transforms here, so the served preprocessing is the
trained one: `eval_transform` (resize, center crop, normalise) is used by validation, test
and serving; `train_transform` adds the augmentation.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from handlers.transforms.errors import InputError


# torchvision's ImageNet statistics: every weight source (ImageNet, a local pretraining, none)
# uses them, so one set of weights can replace another without touching the transforms.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 256 / 224  # resize a little larger than the crop, as torchvision's ImageNet recipe


def _to_normalised_tensor() -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]


def eval_transform(image_size: int) -> v2.Compose:
    """Deterministic: PIL RGB -> float32 (3, image_size, image_size)."""
    return v2.Compose([v2.ToImage(), v2.Resize(round(image_size * RESIZE_RATIO), antialias=True),
                       v2.CenterCrop(image_size), *_to_normalised_tensor()])


def train_transform(image_size: int) -> v2.Compose:
    """Random resized crop, horizontal flip and a small rotation, then the same normalisation."""
    return v2.Compose([v2.ToImage(), v2.RandomResizedCrop(image_size, scale=(0.6, 1.0), antialias=True),
                       v2.RandomHorizontalFlip(), v2.RandomRotation(10), *_to_normalised_tensor()])


def top_k(probabilities: torch.Tensor, class_names: list[str], k: int) -> list[dict]:
    """The k most likely classes of one example, most likely first."""
    scores, indices = probabilities.topk(min(k, len(class_names)))
    return [{"label": class_names[i], "score": s} for s, i in zip(scores.tolist(), indices.tolist())]


def parse_top_k(raw, num_classes: int) -> int:
    """A request's top-k option (text or bytes) -> an int in 1..num_classes, or InputError."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    if not text.strip().isdigit() or not 1 <= int(text) <= num_classes:
        raise InputError(f"topk must be a whole number from 1 to {num_classes}, got {text[:20]!r}")
    return int(text)
