"""Decode untrusted image bytes with explicit limits, before any pixel is decompressed."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from handlers.transforms.errors import InputError

ACCEPTED_FORMATS = ("PNG", "JPEG")


def decode_image(data: bytes | bytearray, max_bytes: int, max_pixels: int, min_side: int = 1) -> Image.Image:
    """PNG/JPEG bytes -> a fully loaded PIL image.

    The size checks read only the header, so a decompression bomb (a tiny file that declares a
    huge canvas) is refused before it is decoded: first by PIL's own limit (Image.MAX_IMAGE_PIXELS,
    whose warning is raised as an error here), then by the model's `max_pixels`.
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
        raise InputError(f"image declares more pixels than PIL's decompression-bomb limit of "
                         f"{Image.MAX_IMAGE_PIXELS}", status=413) from None
    except (OSError, SyntaxError, ValueError) as error:  # a header cut off or mangled before its end
        raise InputError(f"image is truncated or corrupt ({error})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise InputError(f"image is {width}x{height} = {width * height} pixels; the model's max_image_pixels "
                         f"limit is {max_pixels}", status=413)
    if min(width, height) < min_side:
        raise InputError(f"image is {width}x{height}; both sides must be at least {min_side} px", status=422)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"image is truncated or corrupt ({error})") from None
    return image


HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "F")


def _rescale_to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float images -> 'L', stretched over their own range instead of clipped at 255."""
    import numpy as np

    pixels = np.asarray(image, dtype=np.float64)
    low, high = pixels.min(), pixels.max()
    scaled = (pixels - low) / (high - low) * 255 if high > low else np.zeros_like(pixels)
    return Image.fromarray(scaled.round().astype(np.uint8), mode="L")


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def _flatten_transparency(image: Image.Image, background: int) -> Image.Image:
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (background, background, background, 255))
    return Image.alpha_composite(canvas, rgba)


def _convert(image: Image.Image, mode: str, background: int) -> Image.Image:
    if image.mode in HIGH_BIT_MODES:
        return _rescale_to_8bit(image).convert(mode)
    if _has_transparency(image):
        return _flatten_transparency(image, background).convert(mode)
    return image.convert(mode)


def to_grayscale(image: Image.Image, background: int = 0) -> Image.Image:
    """Any mode -> 8-bit 'L'. Transparent pixels become `background`; 16-bit and float images
    are rescaled to their own range instead of being clipped at 255."""
    return image if image.mode == "L" else _convert(image, "L", background)


def to_rgb(image: Image.Image, background: int = 0) -> Image.Image:
    """Any mode -> 'RGB', with transparency and 16-bit treated as in `to_grayscale`."""
    return image if image.mode == "RGB" else _convert(image, "RGB", background)


def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 pixels (H, W) or (H, W, C) as a PNG file."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
