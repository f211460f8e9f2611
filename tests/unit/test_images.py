import math

import numpy as np
import pytest
from PIL import Image

from handlers.transforms.errors import InputError
from handlers.transforms.images import decode_image, to_grayscale
from tests.images import decompression_bomb_png, encode

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 1_000_000}


def test_png_and_jpeg_decode_to_loaded_images():
    for fmt in ("PNG", "JPEG"):
        image = decode_image(encode(Image.new("RGB", (40, 30), "white"), fmt), **LIMITS)
        assert image.size == (40, 30)


@pytest.mark.parametrize("data, status, words", [
    (b"", 400, "empty body"),
    (b"GIF89a" + b"\x00" * 100, 415, "not a PNG or JPEG"),
    (b"hello world", 415, "not a PNG or JPEG"),
    (b"\x00" * 1_000_001, 413, "bytes"),
])
def test_bad_bytes_raise_input_error_with_status(data, status, words):
    with pytest.raises(InputError) as error:
        decode_image(data, **LIMITS)
    assert error.value.status == status and words in error.value.message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("cut", [0.05, 0.2, 0.5, 0.9])
def test_files_cut_anywhere_are_truncated_or_corrupt_not_a_crash(fmt, cut):
    whole = encode(Image.new("RGB", (300, 300), "white"), fmt)
    with pytest.raises(InputError) as error:
        decode_image(whole[: max(int(len(whole) * cut), 10)], **LIMITS)
    assert error.value.status == 400 and "truncated or corrupt" in error.value.message


def test_gif_is_refused_even_when_valid():
    with pytest.raises(InputError) as error:
        decode_image(encode(Image.new("P", (8, 8)), "GIF"), **LIMITS)
    assert error.value.status == 415


def test_decompression_bomb_is_refused_from_its_header_by_pils_limit():
    bomb = decompression_bomb_png()
    assert len(bomb) < 200_000
    with pytest.raises(InputError) as error:
        decode_image(bomb, **LIMITS)
    assert error.value.status == 413
    assert f"PIL's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS}" in error.value.message
    assert "max_image_pixels" not in error.value.message


@pytest.mark.parametrize("max_pixels", [1_000_000, 10**12])
def test_image_between_pils_warning_and_error_thresholds_is_refused_whatever_the_model_allows(max_pixels):
    """PIL only warns from MAX_IMAGE_PIXELS up to twice that; decode_image makes the warning an error."""
    side = math.isqrt(Image.MAX_IMAGE_PIXELS) + 100  # a few percent over the warning threshold
    assert Image.MAX_IMAGE_PIXELS < side * side < 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(InputError) as error:
        decode_image(decompression_bomb_png(side), max_bytes=1_000_000, max_pixels=max_pixels)
    assert error.value.status == 413
    assert f"PIL's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS}" in error.value.message


def test_image_over_the_models_pixel_limit_but_under_pils_is_refused_by_the_models_limit():
    """5000x1000 is far below PIL's limit, so only the model's max_pixels can refuse it."""
    wide = encode(Image.new("L", (5000, 1000)))
    assert 5_000_000 < Image.MAX_IMAGE_PIXELS
    with pytest.raises(InputError) as error:
        decode_image(wide, max_bytes=1_000_000, max_pixels=4_000_000)
    assert error.value.status == 413
    assert error.value.message == ("image is 5000x1000 = 5000000 pixels; "
                                   "the model's max_image_pixels limit is 4000000")
    assert decode_image(wide, max_bytes=1_000_000, max_pixels=5_000_000).size == (5000, 1000)


def test_truncated_png_and_jpeg_are_refused():
    for fmt in ("PNG", "JPEG"):
        noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
        data = encode(noisy, fmt)
        with pytest.raises(InputError) as error:
            decode_image(data[: len(data) // 2], **LIMITS)
        assert error.value.status == 400 and "truncated or corrupt" in error.value.message


def test_to_grayscale_handles_modes():
    rgba = Image.new("RGBA", (4, 4), (255, 255, 255, 0))
    assert np.asarray(to_grayscale(rgba, background=0)).max() == 0  # transparent -> background
    sixteen = Image.fromarray(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16))
    assert sixteen.mode.startswith("I")
    gray = np.asarray(to_grayscale(sixteen))
    assert gray.dtype == np.uint8 and gray.min() == 0 and gray.max() == 255
    cmyk = Image.new("CMYK", (3, 3), (0, 0, 0, 0))
    assert to_grayscale(cmyk).mode == "L"
    assert to_grayscale(Image.new("P", (3, 3))).mode == "L"


def test_images_too_thin_to_hold_anything_get_422():
    for size in ((1, 1), (10_000, 1), (3, 500)):
        with pytest.raises(InputError) as error:
            decode_image(encode(Image.new("L", size, 128)), **LIMITS, min_side=8)
        assert error.value.status == 422 and "at least 8 px" in error.value.message
