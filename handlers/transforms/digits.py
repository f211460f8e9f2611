"""MNIST digit pre/post-processing: the one definition used by training and by the handler."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from handlers.transforms.images import to_grayscale

SIDE = 28
MEAN, STD = 0.1307, 0.3081  # MNIST's pixel statistics
CLASS_NAMES = [str(digit) for digit in range(10)]


def image_to_pixels(image: Image.Image) -> np.ndarray:
    """A decoded image of any size and mode -> uint8 (28, 28), white ink on black as in MNIST."""
    gray = to_grayscale(image, background=0)
    if gray.size != (SIDE, SIDE):
        gray = gray.resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return np.array(gray, dtype=np.uint8)


def pixels_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (..., 28, 28) -> normalised float (..., 1, 28, 28), the model's input."""
    tensor = torch.as_tensor(pixels, dtype=torch.float32).div_(255.0)
    return tensor.unsqueeze(-3).sub_(MEAN).div_(STD)


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    return pixels_to_tensor(image_to_pixels(image))


def probabilities_to_response(probabilities: torch.Tensor) -> dict:
    """Softmax row of 10 -> {"label": d, "probabilities": {"0": p0, ...}}."""
    values = probabilities.tolist()
    return {"label": int(probabilities.argmax()),
            "probabilities": dict(zip(CLASS_NAMES, values))}
