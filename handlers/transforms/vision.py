"""Images for torchvision classifiers (ResNet): any size and mode -> a normalised RGB tensor.

Training and the handler build their transforms here, so the served preprocessing is the
trained one: `eval_transform` (resize, center crop, normalise) is used by validation, test
and serving; `train_transform` adds the augmentation.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional

from handlers.transforms.errors import InputError


# torchvision's ImageNet statistics: every weight source (ImageNet, a local pretraining, none)
# uses them, so one set of weights can replace another without touching the transforms.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 256 / 224  # resize a little larger than the crop, as torchvision's ImageNet recipe


def _to_normalised_tensor() -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]


class EvalTransform:
    """Deterministic: PIL RGB -> float32 (3, image_size, image_size): resize the shorter side, center
    crop, normalise. Bit for bit what v2.Compose([ToImage, Resize, CenterCrop, ToDtype, Normalize])
    computes, at under half its cost on 28x28 images: Compose's dispatch costs more than the
    arithmetic, so the kernels are called directly and the normalisation is one table lookup."""

    def __init__(self, image_size: int):
        self.resized_side = [round(image_size * RESIZE_RATIO)]
        self.crop = [image_size, image_size]
        # Each channel's model input for every uint8 level, by the normalising transforms themselves.
        levels = torch.arange(256, dtype=torch.uint8).expand(3, 1, 256)
        self.normalised_levels = v2.Compose(_to_normalised_tensor())(levels)[:, 0]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # channels-last, as v2.ToImage makes it
        pixels = functional.resize_image(pixels, self.resized_side, antialias=True)
        pixels = functional.center_crop_image(pixels, self.crop)
        return self.normalised_levels.gather(1, pixels.long().flatten(1)).view(3, *self.crop)


def eval_transform(image_size: int) -> EvalTransform:
    """What validation, test and serving see."""
    return EvalTransform(image_size)


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
