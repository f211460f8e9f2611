"""Digits no training run ever sees, presented the way people send them.

- scikit-learn's `load_digits`: 1,797 real handwritten 8x8 digits from another source (UCI).
- "as drawn": the same digits as dark ink on a larger light canvas, off-centre, at varied
  size, with paper tone and noise, JPEG-compressed -- what a phone or web canvas sends.
- inverted MNIST: held-out MNIST digits as dark ink on white.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

DATASET_NAME = "sklearn.datasets.load_digits (1,797 digits, 8x8)"


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 8, 8) ink intensity (bright ink on black, like MNIST) and int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images * (255 / 16)).round().astype(np.uint8), digits.target.astype(np.int64)


def as_plain_images(pixels: np.ndarray) -> list[Image.Image]:
    """Each 8x8 digit upsampled to 28x28, white on black."""
    return [Image.fromarray(p).resize((28, 28), Image.Resampling.BICUBIC) for p in pixels]


def as_drawn_by_people(pixels: np.ndarray, seed: int = 0) -> list[bytes]:
    """Each digit as a JPEG of dark ink on light paper: canvas 96-200 px, digit 30-90 px tall,
    anywhere on the canvas, with a paper tone, a light gradient and sensor noise."""
    rng = np.random.default_rng(seed)
    images = []
    for digit in pixels:
        canvas_side = int(rng.integers(96, 201))
        glyph_side = int(rng.integers(30, min(90, canvas_side - 4) + 1))
        glyph = np.asarray(Image.fromarray(digit).resize((glyph_side, glyph_side), Image.Resampling.BICUBIC),
                           dtype=np.float32) / 255
        paper = float(rng.uniform(190, 250))
        gradient = np.linspace(0, rng.uniform(-40, 0), canvas_side)[None, :]  # light falls off to one side
        canvas = np.full((canvas_side, canvas_side), paper, dtype=np.float32) + gradient
        top, left = (int(rng.integers(0, canvas_side - glyph_side + 1)) for _ in range(2))
        ink_tone = float(rng.uniform(0, 60))
        region = canvas[top:top + glyph_side, left:left + glyph_side]
        canvas[top:top + glyph_side, left:left + glyph_side] = region * (1 - glyph) + ink_tone * glyph
        canvas += rng.normal(0, 6, canvas.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).convert("RGB").save(
            buffer, format="JPEG", quality=int(rng.integers(60, 91)))
        images.append(buffer.getvalue())
    return images


def inverted(pixels: np.ndarray) -> list[Image.Image]:
    """MNIST-style digits as dark ink on white."""
    return [Image.fromarray(255 - p) for p in pixels]
