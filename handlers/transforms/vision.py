"""Images for torchvision classifiers (ResNet): any size and mode -> a normalised RGB tensor.

`eval_transform` (resize the shorter side, center crop, normalise) is what validation, test and
serving see; training's augmentation (training/resnet.py) ends in the same normalisation. This
module computes exactly what torchvision's v2 Resize / CenterCrop / ToDtype / Normalize compute
(tests/unit/test_vision.py compares them bit for bit) with torch alone: a serving worker does not
import torchvision, which cost every ResNet worker 1.4 s of CPU at start-up.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.nn import functional

from handlers.transforms.errors import InputError

# torchvision's ImageNet statistics: every weight source (ImageNet, a local pretraining, none)
# uses them, so one set of weights can replace another without touching the transforms.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 256 / 224  # resize a little larger than the crop, as torchvision's ImageNet recipe


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 in the model's convention: ToDtype(scale=True), then Normalize."""
    scaled = pixels.to(torch.float32).mul_(1.0 / 255)
    return scaled.sub_(torch.tensor(MEAN).view(-1, 1, 1)).div_(torch.tensor(STD).view(-1, 1, 1))


def resized_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """The shorter side to `shorter`, the longer in proportion, rounded down (torchvision's rule)."""
    if width <= height:
        return int(shorter * height / width), shorter
    return shorter, int(shorter * width / height)


class EvalTransform:
    """Deterministic: PIL RGB -> float32 (3, image_size, image_size): bilinear antialiased resize of
    the uint8 pixels, center crop, then normalisation as one lookup per pixel."""

    def __init__(self, image_size: int):
        self.shorter = round(image_size * RESIZE_RATIO)
        self.image_size = image_size
        self.normalised_levels = normalise(torch.arange(256, dtype=torch.uint8).expand(3, 1, 256))[:, 0]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # (3, H, W) uint8
        size = resized_size(*pixels.shape[1:], self.shorter)
        if size != tuple(pixels.shape[1:]):
            pixels = functional.interpolate(pixels[None], size=size, mode="bilinear", align_corners=False,
                                            antialias=True)[0]
        top, left = (round((side - self.image_size) / 2.0) for side in size)
        pixels = pixels[:, top:top + self.image_size, left:left + self.image_size]
        return self.normalised_levels.gather(1, pixels.long().flatten(1)).view(3, self.image_size, self.image_size)


def eval_transform(image_size: int) -> EvalTransform:
    """What validation, test and serving see."""
    return EvalTransform(image_size)


def top_k(probabilities: torch.Tensor, class_names: list[str], k: int) -> list[dict]:
    """The k most likely classes of one example, most likely first; of equal scores (an int8
    model's logits are discrete, so exact ties happen) the lower class index first, as argmax."""
    scores, indices = probabilities.sort(descending=True, stable=True)
    scores, indices = scores[:k], indices[:k]
    return [{"label": class_names[i], "score": s} for s, i in zip(scores.tolist(), indices.tolist())]


def parse_top_k(raw, num_classes: int) -> int:
    """A request's top-k option (text or bytes) -> an int in 1..num_classes, or InputError."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    if not text.strip().isdigit() or not 1 <= int(text) <= num_classes:
        raise InputError(f"topk must be a whole number from 1 to {num_classes}, got {text[:20]!r}")
    return int(text)
