"""MNIST served by a real TorchServe, checked over HTTP."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from handlers.transforms import digits
from tests.heldout import mnist_test_digits
from tests.images import decompression_bomb_png, encode, png_of_pixels
from training.optimize import shipped_file


def test_heldout_digits_get_their_labels(client):
    pixels, labels = mnist_test_digits()
    predicted = [client.predict("mnist", data=png_of_pixels(p)).json()["label"] for p in pixels]
    accuracy = np.mean(np.array(predicted) == labels)
    assert accuracy >= 0.7, f"served accuracy {accuracy:.2f} on {len(labels)} held-out digits"


def test_served_probabilities_equal_offline_torchscript(client, artifacts):
    model = torch.jit.load(str(shipped_file(artifacts / "mnist", "mnist"))).eval()  # the variant the .mar ships
    pixels, _ = mnist_test_digits()
    for digit in pixels[:5]:
        body = png_of_pixels(digit)
        served = client.predict("mnist", data=body).json()
        offline = model(digits.image_to_tensor(Image.open(io.BytesIO(body))).unsqueeze(0)).softmax(1)[0]
        served_probabilities = torch.tensor([served["probabilities"][name] for name in digits.CLASS_NAMES])
        assert torch.allclose(served_probabilities, offline, atol=1e-5)
        assert served["label"] == int(offline.argmax())


def test_any_size_and_mode_is_accepted(client):
    digit = mnist_test_digits()[0][0]
    large_rgb = Image.fromarray(digit).resize((280, 280)).convert("RGB")
    for body in (encode(large_rgb, "JPEG", quality=90), encode(large_rgb.convert("RGBA")),
                 encode(Image.fromarray(digit).convert("P"))):
        response = client.predict("mnist", data=body)
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"label", "probabilities"}


def test_multipart_field_data_is_accepted(client, server):
    digit = mnist_test_digits()[0][3]
    response = requests.post(f"{server.inference_url}/predictions/mnist",
                             files={"data": ("digit.png", png_of_pixels(digit), "image/png")},
                             headers=client.auth_headers("inference"), timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == client.predict("mnist", data=png_of_pixels(digit)).json()


def test_bad_item_in_batch_gets_400_and_neighbours_succeed(client):
    pixels, _ = mnist_test_digits()
    bodies = [png_of_pixels(pixels[0]), b"this is not an image", png_of_pixels(pixels[1]),
              png_of_pixels(pixels[2])]
    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda body: client.predict("mnist", data=body), bodies))
    assert [r.status_code for r in responses] == [200, 415, 200, 200]
    assert "not a PNG or JPEG" in responses[1].json()["message"]
    for i in (0, 2, 3):
        batched, alone = responses[i].json(), client.predict("mnist", data=bodies[i]).json()
        assert batched["label"] == alone["label"]
        assert np.allclose(list(batched["probabilities"].values()), list(alone["probabilities"].values()), atol=1e-5)


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, "empty body"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 415, "not a PNG or JPEG"),
    (decompression_bomb_png(), 413, "pixels"),
    (encode(Image.fromarray(mnist_test_digits()[0][0]))[:-60], 400, "truncated"),
])
def test_bad_input_gets_json_4xx_and_worker_stays_up(client, server, body, status, words):
    pids = server.worker_pids("mnist")
    response = client.predict("mnist", data=body)
    assert response.status_code == status, response.text
    assert words in response.json()["message"]
    assert server.worker_pids("mnist") == pids
    assert client.predict("mnist", data=png_of_pixels(mnist_test_digits()[0][0])).status_code == 200


def test_json_body_is_refused_with_415(client):
    response = client.predict("mnist", json_body={"image": "nope"})
    assert response.status_code == 415
    assert "expected PNG or JPEG bytes" in response.json()["message"]


def test_body_over_max_request_size_gets_413_and_the_server_carries_on(client):
    response = client.predict("mnist", data=b"\x00" * (4 * 1024 * 1024 + 1))
    assert response.status_code == 413  # the frontend answers before any worker sees it, with no body
    assert client.predict("mnist", data=png_of_pixels(mnist_test_digits()[0][0])).status_code == 200


def test_requests_without_or_with_a_wrong_token_are_refused(server):
    body = png_of_pixels(mnist_test_digits()[0][0])
    url = f"{server.inference_url}/predictions/mnist"
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        refused = requests.post(url, data=body, headers=headers, timeout=10)
        assert refused.status_code == 400 and refused.json()["type"] == "InvalidKeyException"  # TorchServe's code


@pytest.mark.management
def test_management_without_a_token_is_refused(server):
    assert requests.get(f"{server.management_url}/models", timeout=10).status_code == 400


@pytest.mark.management
def test_registering_a_model_from_a_url_is_refused(client, server):
    before = client.registered_models()
    response = requests.post(f"{server.management_url}/models", params={"url": "http://127.0.0.1:9/evil.mar"},
                             headers=client.auth_headers("management"), timeout=10)
    assert response.status_code == 405  # the model API is off
    assert client.registered_models() == before == sorted(server.models)


@pytest.mark.management
def test_metrics_port_serves_prometheus_text(client, server):
    client.predict("mnist", data=png_of_pixels(mnist_test_digits()[0][0]))
    response = requests.get(f"{server.metrics_url}/metrics", timeout=10)
    assert response.status_code == 200
    assert "# TYPE" in response.text and 'model_name="mnist"' in response.text


def test_dark_ink_on_light_paper_is_served_like_the_mnist_original(client):
    pixels, labels = mnist_test_digits()
    agree = correct = 0
    for digit, label in zip(pixels, labels):
        paper = np.full((120, 160), 230, dtype=np.uint8)
        glyph = np.asarray(Image.fromarray(digit).resize((70, 70)), dtype=np.float32) / 255
        paper[30:100, 70:140] = (paper[30:100, 70:140] * (1 - glyph)).astype(np.uint8)
        drawn = client.predict("mnist", data=encode(Image.fromarray(paper).convert("RGB"), "JPEG", quality=85))
        original = client.predict("mnist", data=png_of_pixels(digit))
        assert drawn.status_code == 200, drawn.text
        agree += drawn.json()["label"] == original.json()["label"]
        correct += drawn.json()["label"] == label
    assert agree / len(labels) >= 0.8 and correct / len(labels) >= 0.65, (agree, correct, len(labels))
