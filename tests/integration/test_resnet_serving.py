"""The transfer-learned ResNet-18 served by a real TorchServe, checked over HTTP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from tests.heldout import fashion_target_test_images
from tests.images import decompression_bomb_png, encode, png_of_pixels


def test_top_k_is_sorted_sums_at_most_one_and_is_chosen_per_request(client, server):
    body = png_of_pixels(fashion_target_test_images()[0][0])
    default = client.predict("resnet", data=body).json()
    by_header = client.predict("resnet", data=body, headers={"X-TopK": "5"}).json()
    by_form = requests.post(f"{server.inference_url}/predictions/resnet", files={"data": ("x.png", body, "image/png")},
                            data={"topk": "2"}, headers=client.auth_headers("inference"), timeout=30).json()
    assert [len(answer) for answer in (default, by_header, by_form)] == [3, 5, 2]
    for answer in (default, by_header):
        scores = [item["score"] for item in answer]
        assert scores == sorted(scores, reverse=True) and sum(scores) <= 1 + 1e-5
    assert sum(item["score"] for item in by_header) == pytest.approx(1, abs=1e-4)  # k = every class
    assert by_header[:3] == default and by_form == default[:2]


def test_bad_top_k_gets_400_naming_it(client):
    body = png_of_pixels(fashion_target_test_images()[0][0])
    response = client.predict("resnet", data=body, headers={"X-TopK": "all"})
    assert response.status_code == 400
    assert "topk must be a whole number from 1 to 5" in response.json()["message"]


def test_any_mode_and_size_is_accepted(client):
    image = Image.fromarray(fashion_target_test_images()[0][1])
    for body in (encode(image.resize((640, 480)).convert("RGB"), "JPEG", quality=85), encode(image.convert("RGBA")),
                 encode(image.convert("P")), encode(image.convert("LA"))):
        response = client.predict("resnet", data=body)
        assert response.status_code == 200, response.text
        assert len(response.json()) == 3


def test_bad_item_in_batch_gets_400_and_neighbours_succeed(client):
    images, _ = fashion_target_test_images()
    good = [png_of_pixels(p) for p in images[2:5]]
    truncated = encode(Image.fromarray(images[5]).resize((200, 200)), "JPEG")
    bodies = [good[0], truncated[: len(truncated) // 2], good[1], good[2]]
    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda body: client.predict("resnet", data=body), bodies))
    assert [r.status_code for r in responses] == [200, 400, 200, 200]
    assert "truncated or corrupt" in responses[1].json()["message"]
    for i, body in ((0, good[0]), (2, good[1]), (3, good[2])):
        alone = client.predict("resnet", data=body).json()
        assert [item["label"] for item in responses[i].json()] == [item["label"] for item in alone]


@pytest.mark.parametrize("body, status, words", [
    (decompression_bomb_png(), 413, "pixels"),
    (encode(Image.new("RGB", (300, 300), "white"), "JPEG")[:400], 400, "truncated or corrupt"),
])
def test_bombs_and_truncated_files_are_refused_without_hanging(client, body, status, words):
    started = time.monotonic()
    response = client.predict("resnet", data=body)
    assert response.status_code == status and words in response.json()["message"]
    assert time.monotonic() - started < 15  # "no hang", not a speed claim
    assert client.predict("resnet", data=png_of_pixels(fashion_target_test_images()[0][0])).status_code == 200
