"""The ResNet handler called directly with a real ts Context: top-k, per-request options, errors."""

import pytest
from ts.context import RequestProcessor

from handlers.resnet import ResnetHandler
from tests.handler_context import initialized, statuses
from tests.heldout import fashion_target_test_images
from tests.images import decompression_bomb_png, png_of_pixels


@pytest.fixture
def resnet(artifacts):
    return initialized(ResnetHandler, artifacts / "resnet", "resnet", batch=4)


def requests_of(images) -> list[dict]:
    return [{"body": bytearray(png_of_pixels(pixels))} for pixels in images]


def test_default_answer_is_the_top_three_sorted(resnet):
    handler, context = resnet
    images, _ = fashion_target_test_images()
    answers = handler.handle(requests_of(images[:2]), context)
    for answer in answers:
        assert len(answer) == 3
        scores = [item["score"] for item in answer]
        assert scores == sorted(scores, reverse=True) and sum(scores) <= 1 + 1e-6
        assert {item["label"] for item in answer} <= set(handler.class_names)


def test_top_k_per_request_from_header_or_form_field(resnet):
    handler, context = resnet
    images, _ = fashion_target_test_images()
    rows = requests_of(images[:4])
    rows[1]["topk"] = bytearray(b"1")  # a multipart field
    rows[3]["topk"] = "5"
    context.request_processor = [RequestProcessor({}), RequestProcessor({}), RequestProcessor({"X-TopK": "2"}),
                                 RequestProcessor({})]
    answers = handler.handle(rows, context)
    assert [len(answer) for answer in answers] == [3, 1, 2, 5]


def test_bad_items_and_bad_options_fail_alone(resnet):
    handler, context = resnet
    images, _ = fashion_target_test_images()
    rows = [*requests_of(images[:1]), {"body": bytearray(b"not an image")},
            {"body": bytearray(decompression_bomb_png())}, {**requests_of(images[1:2])[0], "topk": "99"}]
    answers = handler.handle(rows, context)
    assert statuses(context, 4) == [200, 415, 413, 400]
    assert len(answers[0]) == 3
    assert "topk must be a whole number from 1 to 5" in answers[3]["message"]
