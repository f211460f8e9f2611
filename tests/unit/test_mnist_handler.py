from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from handlers.mnist import MnistHandler
from tests.handler_context import initialized, statuses
from tests.heldout import mnist_test_digits
from tests.images import decompression_bomb_png, encode, png_of_pixels

MNIST_MODEL_CONFIG = Path(__file__).resolve().parents[2] / "handlers" / "config" / "mnist.yaml"


def test_batch_with_bad_items_answers_each_request_on_its_own(artifacts):
    handler, context = initialized(MnistHandler, artifacts / "mnist", "mnist", batch=5)
    pixels, _ = mnist_test_digits()
    batch = [{"body": bytearray(png_of_pixels(pixels[0]))}, {"body": bytearray(b"garbage")},
             {"data": bytearray(png_of_pixels(pixels[1]))}, {"body": {"json": "object"}},
             {"body": bytearray(decompression_bomb_png())}]
    answers = handler.handle(batch, context)
    assert statuses(context, 5) == [200, 415, 200, 415, 413]
    assert set(answers[0]) == {"label", "probabilities"} and set(answers[2]) == {"label", "probabilities"}
    assert answers[1] == {"code": 415, "type": "Unsupported Media Type", "message": "body is not a PNG or JPEG image"}
    assert "PIL's decompression-bomb limit" in answers[4]["message"]
    assert all(context.get_response_content_type(i) == "application/json" for i in range(5))


def test_handler_answers_match_batched_model_output(artifacts):
    handler, context = initialized(MnistHandler, artifacts / "mnist", "mnist", batch=3)
    pixels, labels = mnist_test_digits()
    answers = handler.handle([{"body": bytearray(png_of_pixels(p))} for p in pixels[:3]], context)
    single = [handler.handle([{"body": bytearray(png_of_pixels(p))}], context)[0] for p in pixels[:3]]
    for batched, alone in zip(answers, single):
        assert batched["label"] == alone["label"]
        assert np.allclose(list(batched["probabilities"].values()), list(alone["probabilities"].values()), atol=1e-5)


def test_limits_come_from_model_config(artifacts):
    handler, context = initialized(MnistHandler, artifacts / "mnist", "mnist", batch=1,
                                   handler_settings={"max_image_bytes": 100})
    answer = handler.handle([{"body": bytearray(png_of_pixels(mnist_test_digits()[0][0]))}], context)[0]
    assert statuses(context, 1) == [413] and "limit is 100" in answer["message"]


def test_missing_body_gets_400(artifacts):
    handler, context = initialized(MnistHandler, artifacts / "mnist", "mnist", batch=1)
    answer = handler.handle([{}], context)[0]
    assert statuses(context, 1) == [400] and "empty body" in answer["message"]


def test_image_over_mnists_own_pixel_limit_gets_413_naming_that_limit(artifacts):
    settings = yaml.safe_load(MNIST_MODEL_CONFIG.read_text())["handler"]
    limit = settings["max_image_pixels"]
    assert limit < 5000 * 1000 < Image.MAX_IMAGE_PIXELS  # only the model's own limit can refuse it
    handler, context = initialized(MnistHandler, artifacts / "mnist", "mnist", batch=2, handler_settings=settings)
    wide = encode(Image.new("L", (5000, 1000)))
    assert len(wide) < settings["max_image_bytes"]
    digit = png_of_pixels(mnist_test_digits()[0][0])
    answers = handler.handle([{"body": bytearray(wide)}, {"body": bytearray(digit)}], context)
    assert statuses(context, 2) == [413, 200]
    assert answers[0]["message"] == (f"image is 5000x1000 = 5000000 pixels; "
                                     f"the model's max_image_pixels limit is {limit}")
