"""Decode untrusted image bytes with explicit limits, before any pixel is decompressed."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from handlers.transforms.errors import InputError

ACCEPTED_FORMATS = ("PNG", "JPEG")


def decode_image(data: bytes | bytearray, max_bytes: int, max_pixels: int, min_side: int = 1) -> Image.Image:
    """PNG/JPEG bytes -> a fully loaded PIL image.

    The size check reads only the header, so a decompression bomb (a tiny file that declares a
    huge canvas) is refused before it is decoded.
    """
    if not data:
        raise InputError("empty body: send PNG or JPEG bytes")
    if len(data) > max_bytes:
        raise InputError(f"image is {len(data)} bytes; the limit is {max_bytes}", status=413)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise InputError("body is not a PNG or JPEG image", status=415) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"image declares too many pixels; the limit is {max_pixels}", status=413) from None
    width, height = image.size
    if width * height > max_pixels:
        raise InputError(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
                         status=413)
    if min(width, height) < min_side:
        raise InputError(f"image is {width}x{height}; both sides must be at least {min_side} px", status=422)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"image is truncated or corrupt ({error})") from None
    return image


def to_grayscale(image: Image.Image, background: int = 0) -> Image.Image:
    """Any mode -> 8-bit 'L'. Transparent pixels become `background`; 16-bit and float images
    are rescaled to their own range instead of being clipped at 255."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        import numpy as np

        pixels = np.asarray(image, dtype=np.float64)
        low, high = pixels.min(), pixels.max()
        scaled = (pixels - low) / (high - low) * 255 if high > low else np.zeros_like(pixels)
        return Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (background, background, background, 255))
        return Image.alpha_composite(canvas, rgba).convert("L")
    return image.convert("L")
