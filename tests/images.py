"""Image bytes for tests, built from real held-out digits."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_of_pixels(pixels: np.ndarray) -> bytes:
    return encode(Image.fromarray(pixels.astype(np.uint8), mode="L"))


def decompression_bomb_png(side: int = 30_000) -> bytes:
    """A few-KB PNG that declares side x side pixels (900 M for the default)."""
    return encode(Image.new("1", (side, side)), optimize=True)
