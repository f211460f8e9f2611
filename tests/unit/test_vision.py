"""handlers/transforms/vision.py: ResNet's eval transform computes torchvision's transforms bit for
bit, and the held-out photos keep the model inputs and labels they had (tests/preprocess_reference.py)."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from handlers.resnet import ResnetHandler
from handlers.transforms import vision
from handlers.transforms.images import to_rgb
from tests.handler_context import initialized
from tests.preprocess_reference import assert_served_like_reference
from training.catalog import CATALOG

REFERENCE_REQUESTS = 800  # a spread over the classes: the reference of all 5,000 would weigh 3 MB


def test_heldout_photos_keep_their_model_inputs_within_one_grey_level_and_their_labels(artifacts):
    handler, _ = initialized(ResnetHandler, artifacts / "resnet", "resnet")
    bodies = [sample.body for sample in CATALOG["resnet"].heldout_requests(REFERENCE_REQUESTS)]
    assert_served_like_reference(handler, bodies, "resnet_heldout", vision.MEAN, vision.STD)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16"])
@pytest.mark.parametrize("size", [(8, 8), (28, 28), (300, 97), (97, 300), (640, 480)])
def test_eval_transform_equals_torchvisions_own_transforms_bit_for_bit(mode, size):
    noise = np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = to_rgb(Image.fromarray(noise).convert(mode) if mode != "I;16" else
                   Image.fromarray(noise[..., 0].astype(np.uint16) * 257))
    for image_size in (32, 224):
        torchvision_eval = v2.Compose([
            v2.ToImage(), v2.Resize(round(image_size * vision.RESIZE_RATIO), antialias=True),
            v2.CenterCrop(image_size), v2.ToDtype(torch.float32, scale=True), v2.Normalize(vision.MEAN, vision.STD)])
        assert torch.equal(vision.eval_transform(image_size)(image), torchvision_eval(image))
