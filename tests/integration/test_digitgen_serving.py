"""The digit generator served by a real TorchServe, checked over HTTP."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from loadtest.verify import decode_images
from training.catalog import CATALOG

MODEL = "digitgen"
JUDGE = CATALOG[MODEL].judge  # the classifier of this service that recognises digits


def generate(client, headers: dict | None = None, **fields):
    return client.predict(MODEL, data=json.dumps(fields).encode(),
                          headers={"Content-Type": "application/json", **(headers or {})})


def test_the_same_seed_gives_the_same_bytes_over_http(client):
    first, again = (generate(client, digit=7, count=4, seed=123) for _ in range(2))
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    answer = first.json()
    assert (answer["digit"], answer["seed"], len(answer["images"])) == (7, 123, 4)
    assert decode_images(answer).shape == (4, 28, 28)


def test_accept_image_png_gets_one_png_grid_of_the_right_size(client):
    response = generate(client, {"Accept": "image/png"}, digit=2, count=16, seed=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("image/png")
    assert (response.headers["X-Digit"], response.headers["X-Seed"]) == ("2", "5")
    grid = Image.open(io.BytesIO(response.content))
    assert grid.format == "PNG" and grid.size == (4 * 30 - 2, 4 * 30 - 2)
    images = decode_images(generate(client, digit=2, count=16, seed=5).json())
    assert np.array_equal(np.asarray(grid)[30:58, :28], images[4])  # second row, first column


def test_concurrent_requests_each_get_the_images_they_get_alone(client):
    """Concurrent requests reach the worker in shared batches (the test server waits 150 ms to fill
    one); each still gets exactly the images it gets alone."""
    asks = [{"digit": index % 10, "count": 1 + index % 3, "seed": 1000 + index} for index in range(12)]
    alone = [generate(client, **ask).json() for ask in asks]
    with ThreadPoolExecutor(len(asks)) as pool:
        together = list(pool.map(lambda ask: generate(client, **ask), asks))
    assert [response.status_code for response in together] == [200] * len(asks)
    assert [response.json() for response in together] == alone


def test_generated_digits_are_recognised_by_the_served_digit_classifier(client):
    images = generate(client, digit=3, count=16, seed=77).json()["images"]
    labels = [client.predict(JUDGE, data=base64.b64decode(image)).json()["label"] for image in images]
    assert sum(label == 3 for label in labels) >= 8, labels  # the small test generator; the full run: README
