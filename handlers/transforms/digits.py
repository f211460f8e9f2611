"""MNIST digit pre/post-processing: the one definition used by training and by the handler.

People send dark ink on light paper, off-centre, at any size; MNIST is white ink on black,
the digit scaled into a 20x20 box and centred by its centre of mass in a 28x28 frame.
`normalize_digit` does to any image what MNIST's authors did to theirs, and training runs
its own digits through the same function, so both sides see the same convention.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageFilter

from handlers.transforms.errors import InputError
from handlers.transforms.images import to_grayscale

SIDE = 28
BOX = 20  # MNIST scales each digit's longer side to 20 px
MEAN, STD = 0.1307, 0.3081  # MNIST's pixel statistics
CLASS_NAMES = [str(digit) for digit in range(10)]
WORKING_SIDE = 128  # large photos are shrunk first: cheaper, and denoising works at one scale
INK_THRESHOLD = 0.2  # after contrast stretch, fainter pixels are paper, noise or shadow


def paper_background(gray: Image.Image) -> Image.Image:
    """The light falling on the paper without the ink: a grey opening wider than any stroke,
    computed at quarter resolution (rank filters cost the square of their size)."""
    small = gray.resize((max(1, gray.width // 4), max(1, gray.height // 4)), Image.Resampling.BOX)
    size = max(3, (min(small.size) // 3) | 1)
    opened = small.filter(ImageFilter.MinFilter(size)).filter(ImageFilter.MaxFilter(size))
    return opened.resize(gray.size, Image.Resampling.BILINEAR)


def ink_map(gray: Image.Image) -> np.ndarray:
    """8-bit grayscale -> float ink intensity in [0, 1], ink bright on a zero background.

    A light border means dark ink on paper, so the image is inverted. Uneven light is removed
    by subtracting a grey opening (a white top-hat), then contrast is stretched.
    """
    if max(gray.size) > WORKING_SIDE:
        gray = gray.copy()
        gray.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if np.median(border) > 127:
        gray = Image.fromarray((255 - pixels).astype(np.uint8))
    if min(gray.size) >= 32:  # photos and scans, not MNIST-sized digits
        gray = gray.filter(ImageFilter.MedianFilter(3))
        background = paper_background(gray)
        ink = np.asarray(gray, dtype=np.float32) - np.asarray(background, dtype=np.float32)
    else:
        ink = np.asarray(gray, dtype=np.float32)
    peak = np.percentile(ink, 99.5)
    if peak <= 0:
        return np.zeros_like(ink)
    ink = np.clip(ink / peak, 0, 1)
    ink[ink < INK_THRESHOLD] = 0
    return ink


def center_in_frame(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink, scale the longer side to 20 px, centre by centre of mass in 28x28."""
    rows, cols = np.nonzero(ink)
    if len(rows) == 0:
        raise InputError("no digit found: the image is blank", status=422)
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    glyph = np.asarray(Image.fromarray(crop * 255).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    glyph = np.clip(glyph, 0, 255)
    total = glyph.sum()
    if total == 0:
        raise InputError("no digit found: the image is blank", status=422)
    row_mass, col_mass = np.indices(glyph.shape)
    center_row, center_col = (row_mass * glyph).sum() / total, (col_mass * glyph).sum() / total
    top = int(np.clip(round(SIDE / 2 - center_row), 0, SIDE - glyph.shape[0]))
    left = int(np.clip(round(SIDE / 2 - center_col), 0, SIDE - glyph.shape[1]))
    frame = np.zeros((SIDE, SIDE), dtype=np.float32)
    frame[top:top + glyph.shape[0], left:left + glyph.shape[1]] = glyph
    return frame.round().astype(np.uint8)


def normalize_digit(image: Image.Image) -> np.ndarray:
    """A decoded image of any size and mode -> uint8 (28, 28) in MNIST's convention."""
    return center_in_frame(ink_map(to_grayscale(image, background=255)))


def pixels_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (..., 28, 28) -> normalised float (..., 1, 28, 28), the model's input."""
    tensor = torch.as_tensor(pixels, dtype=torch.float32).div_(255.0)
    return tensor.unsqueeze(-3).sub_(MEAN).div_(STD)


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    return pixels_to_tensor(normalize_digit(image))


def probabilities_to_response(probabilities: torch.Tensor) -> dict:
    """Softmax row of 10 -> {"label": d, "probabilities": {"0": p0, ...}}."""
    return {"label": int(probabilities.argmax()),
            "probabilities": dict(zip(CLASS_NAMES, probabilities.tolist()))}
