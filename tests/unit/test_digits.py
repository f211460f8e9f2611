import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from handlers.mnist import MnistHandler
from handlers.transforms import digits
from handlers.transforms.errors import InputError
from tests.handler_context import initialized
from tests.heldout import mnist_test_digits
from tests.preprocess_reference import assert_served_like_reference
from training.catalog import CATALOG
from training.data import handwritten


def center_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(pixels.shape)
    return (rows * pixels).sum() / pixels.sum(), (cols * pixels).sum() / pixels.sum()


def dark_ink_on_paper(digit: np.ndarray, canvas: int, top: int, left: int, scale: int, paper: int = 235) -> Image.Image:
    """An MNIST digit drawn dark on a light canvas, `scale` times larger, at (top, left)."""
    glyph = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC),
                       dtype=np.float32) / 255
    page = np.full((canvas, canvas), paper, dtype=np.float32)
    page[top:top + 28 * scale, left:left + 28 * scale] *= 1 - glyph
    return Image.fromarray(page.astype(np.uint8))


def test_image_of_any_size_and_mode_becomes_one_28x28_tensor():
    digit = mnist_test_digits()[0][0]
    for image in (Image.fromarray(digit), Image.fromarray(digit).resize((300, 120)).convert("RGB"),
                  Image.fromarray(digit).resize((5, 9)).convert("RGBA")):
        tensor = digits.image_to_tensor(image)
        assert tensor.shape == (1, 28, 28) and tensor.dtype == torch.float32


def test_pixels_to_tensor_normalises_with_mnist_statistics():
    black, white = digits.pixels_to_tensor(np.zeros((28, 28), np.uint8)), digits.pixels_to_tensor(
        np.full((28, 28), 255, np.uint8))
    assert torch.allclose(black, torch.full_like(black, -digits.MEAN / digits.STD))
    assert torch.allclose(white, torch.full_like(white, (1 - digits.MEAN) / digits.STD))


def test_batch_of_pixels_keeps_batch_dimension():
    assert digits.pixels_to_tensor(np.zeros((5, 28, 28), np.uint8)).shape == (5, 1, 28, 28)


def test_inverted_digit_gives_the_same_tensor_as_the_original():
    for digit in mnist_test_digits()[0][:10]:
        original = digits.image_to_tensor(Image.fromarray(digit))
        inverted = digits.image_to_tensor(Image.fromarray(255 - digit))
        assert torch.equal(original, inverted)


def test_mnist_digits_are_almost_unchanged_by_normalisation():
    for digit in mnist_test_digits()[0][:10]:
        normalized = digits.normalize_digit(Image.fromarray(digit))
        assert np.abs(normalized.astype(int) - digit).mean() < 8  # MNIST already follows the convention


def test_off_centre_digit_is_centred_by_centre_of_mass_in_a_20px_box():
    digit = mnist_test_digits()[0][5]
    corner = dark_ink_on_paper(digit, canvas=200, top=5, left=110, scale=3)
    normalized = digits.normalize_digit(corner)
    rows, cols = np.nonzero(normalized > 0)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)
    center_row, center_col = center_of_mass(normalized.astype(float))
    assert abs(center_row - 14) <= 1 and abs(center_col - 14) <= 1


def test_light_background_photo_with_uneven_light_and_noise_is_inverted_and_matches():
    digit = mnist_test_digits()[0][7]
    page = np.asarray(dark_ink_on_paper(digit, canvas=120, top=20, left=30, scale=2), dtype=np.float32)
    page += np.linspace(0, -50, 120)[None, :] + np.random.default_rng(0).normal(0, 5, page.shape)
    photo = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).convert("RGB")
    jpeg = Image.open(io.BytesIO(_jpeg(photo)))
    normalized = digits.normalize_digit(jpeg)
    assert normalized[0].sum() == 0 and normalized[:, 0].sum() == 0  # background is black, ink is white
    reference = digits.normalize_digit(Image.fromarray(digit)).astype(float)
    correlation = np.corrcoef(normalized.astype(float).ravel(), reference.ravel())[0, 1]
    assert correlation > 0.8


def test_transparent_canvas_with_dark_strokes_reads_as_ink():
    digit = mnist_test_digits()[0][9]
    rgba = np.zeros((56, 56, 4), dtype=np.uint8)
    rgba[..., 3] = np.asarray(Image.fromarray(digit).resize((56, 56)))  # black strokes, alpha = ink
    normalized = digits.normalize_digit(Image.fromarray(rgba, mode="RGBA"))
    reference = digits.normalize_digit(Image.fromarray(digit)).astype(float)
    assert np.corrcoef(normalized.astype(float).ravel(), reference.ravel())[0, 1] > 0.8


def test_blank_image_is_refused_with_422():
    for blank in (Image.new("L", (28, 28), 0), Image.new("RGB", (300, 200), "white")):
        with pytest.raises(InputError) as error:
            digits.normalize_digit(blank)
        assert error.value.status == 422 and "blank" in error.value.message


@pytest.mark.parametrize("heldout_set, bodies", [
    ("mnist_heldout", lambda: [sample.body for sample in CATALOG["mnist"].heldout_requests()]),
    ("people", lambda: handwritten.as_drawn_by_people(handwritten.load_sklearn_digits()[0])),
])
def test_heldout_and_people_style_digits_keep_their_model_inputs_within_one_grey_level_and_their_labels(
        heldout_set, bodies, artifacts):
    handler, _ = initialized(MnistHandler, artifacts / "mnist", "mnist")
    assert_served_like_reference(handler, bodies(), heldout_set, [digits.MEAN], [digits.STD])


@pytest.mark.parametrize("shape", [(1, 1), (2, 40), (31, 7), (32, 32), (97, 128)])
def test_median_and_rank_filters_equal_pils_bit_for_bit(shape):
    rng = np.random.default_rng(shape[0])
    for pixels in (rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 3, shape, dtype=np.uint8) * 100):
        image = Image.fromarray(pixels)
        assert np.array_equal(digits.median_3x3(pixels), np.asarray(image.filter(ImageFilter.MedianFilter(3))))
        for size in (3, 11):
            assert np.array_equal(digits.rank_filter(pixels, size, np.minimum),
                                  np.asarray(image.filter(ImageFilter.MinFilter(size))))
            assert np.array_equal(digits.rank_filter(pixels, size, np.maximum),
                                  np.asarray(image.filter(ImageFilter.MaxFilter(size))))


def test_percentile_equals_numpys_bit_for_bit():
    rng = np.random.default_rng(0)
    for count in (1, 2, 784, 1000, 16384):
        for values in (rng.integers(0, 256, count).astype(np.uint8), rng.integers(-255, 256, count).astype(np.int16)):
            values[rng.random(count) < 0.9] = 0  # mostly background, as ink maps are
            for q in (0, 50, 99.5, 100):
                expected = np.percentile(values.astype(np.float32), q)
                assert digits.percentile(values, q) == expected and digits.percentile(values, q).dtype == expected.dtype


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def test_response_names_label_and_all_probabilities():
    probabilities = torch.softmax(torch.tensor([0.0] * 7 + [5.0, 0.0, 0.0]), 0)
    response = digits.probabilities_to_response(probabilities)
    assert response["label"] == 7
    assert list(response["probabilities"]) == [str(d) for d in range(10)]
    assert abs(sum(response["probabilities"].values()) - 1) < 1e-6
