import numpy as np
import torch
from PIL import Image

from handlers.transforms import digits


def test_image_of_any_size_and_mode_becomes_one_28x28_tensor():
    for image in (Image.new("L", (28, 28)), Image.new("RGB", (300, 120), "white"), Image.new("RGBA", (5, 9))):
        tensor = digits.image_to_tensor(image)
        assert tensor.shape == (1, 28, 28) and tensor.dtype == torch.float32


def test_pixels_to_tensor_normalises_with_mnist_statistics():
    black, white = digits.pixels_to_tensor(np.zeros((28, 28), np.uint8)), digits.pixels_to_tensor(
        np.full((28, 28), 255, np.uint8))
    assert torch.allclose(black, torch.full_like(black, -digits.MEAN / digits.STD))
    assert torch.allclose(white, torch.full_like(white, (1 - digits.MEAN) / digits.STD))


def test_batch_of_pixels_keeps_batch_dimension():
    assert digits.pixels_to_tensor(np.zeros((5, 28, 28), np.uint8)).shape == (5, 1, 28, 28)


def test_28x28_image_is_not_resampled():
    pixels = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    assert np.array_equal(digits.image_to_pixels(Image.fromarray(pixels)), pixels)


def test_response_names_label_and_all_probabilities():
    probabilities = torch.softmax(torch.tensor([0.0] * 7 + [5.0, 0.0, 0.0]), 0)
    response = digits.probabilities_to_response(probabilities)
    assert response["label"] == 7
    assert list(response["probabilities"]) == [str(d) for d in range(10)]
    assert abs(sum(response["probabilities"].values()) - 1) < 1e-6
