"""Every hostile request gets a clear 4xx quickly, costs no worker, and loses nothing."""

from __future__ import annotations

import http.client
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest
from PIL import Image

from loadtest.verify import top_answer
from tests.heldout import mnist_test_digits
from tests.hostile_corpus import HostileCase, hostile_cases
from tests.images import encode, png_of_pixels
from training.catalog import CATALOG

CASES: list[HostileCase] = [case for entry in CATALOG.values() for case in hostile_cases(entry)]
ANSWER_TIME_LIMIT_S = 15  # "no hang", not a speed claim: CI machines are noisy


def good_request(client, model: str):
    sample = CATALOG[model].heldout_requests(1)[0]
    return client.predict(model, data=sample.body, headers={"Content-Type": sample.content_type})


def assert_good_request_answered(client, model: str) -> None:
    response = good_request(client, model)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_request_gets_a_clear_4xx_quickly_and_no_worker_restarts(case, server, client):
    pids = server.worker_pids(case.model)
    started = time.monotonic()
    response = client.predict(case.model, data=case.body, headers=case.headers)
    elapsed = time.monotonic() - started
    assert response.status_code == case.status, response.text[:300]
    if case.words:
        body = response.json()
        assert case.words in body["message"] and body["code"] == case.status
    assert elapsed < ANSWER_TIME_LIMIT_S
    assert server.worker_pids(case.model) == pids
    assert_good_request_answered(client, case.model)


@pytest.mark.parametrize("model", list(CATALOG))
def test_hostile_requests_mixed_into_batches_leave_neighbours_unaffected(server, client, model):
    sample = CATALOG[model].heldout_requests(1)[0]
    good = (sample.body, {"Content-Type": sample.content_type}, 200)
    expected = good_request(client, model).json()
    hostile = [(c.body, c.headers, c.status) for c in CASES if c.model == model and c.name != "over-max-request-size"]
    interleaved = [item for case in hostile for item in (case, good)]
    pids = server.worker_pids(model)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda r: client.predict(model, data=r[0], headers=r[1]), interleaved))
    assert [r.status_code for r in responses] == [status for _, _, status in interleaved]
    for response, request in zip(responses, interleaved):
        if request is good and CATALOG[model].is_generator:  # the same seed: the same images
            assert response.json() == expected
        elif request is good:
            assert top_answer(response.json())[0] == top_answer(expected)[0]
    assert server.worker_pids(model) == pids


def test_slow_upload_does_not_block_other_clients(server, client):
    address = urlparse(server.inference_url)
    token = client.auth_headers("inference")["Authorization"]
    with socket.create_connection((address.hostname, address.port), timeout=10) as slow:
        slow.sendall(b"POST /predictions/mnist HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 100000\r\nAuthorization: " + token.encode() + b"\r\n\r\n")
        for _ in range(6):  # 3 s of a byte every half second: bounded
            slow.sendall(b"\x89")
            started = time.monotonic()
            assert_good_request_answered(client, "mnist")
            assert time.monotonic() - started < ANSWER_TIME_LIMIT_S  # answered while the upload is still open
            time.sleep(0.5)
    assert_good_request_answered(client, "mnist")


@pytest.mark.parametrize("path", ["/predictions/..%2F..%2Fetc%2Fpasswd", "/predictions/../../etc/passwd",
                                  "/predictions/mnist%00.mar", "/predictions/%2e%2e/mnist"])
def test_path_traversal_in_model_names_finds_no_model(server, client, path):
    address = urlparse(server.inference_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    body = CATALOG["mnist"].heldout_requests(1)[0].body
    connection.request("POST", path, body=body, headers=client.auth_headers("inference"))
    response = connection.getresponse()
    assert response.status in (400, 404), response.status
    connection.close()
    assert_good_request_answered(client, "mnist")


@pytest.mark.parametrize("mode", ["I;16", "CMYK"])
def test_16_bit_and_cmyk_images_are_answered_like_their_8_bit_versions(server, client, mode):
    digit = mnist_test_digits()[0][4]
    if mode == "I;16":
        image, fmt = Image.fromarray(digit.astype("uint16") * 257), "PNG"
    else:
        image, fmt = Image.fromarray(digit).convert("CMYK"), "JPEG"
    unusual = client.predict("mnist", data=encode(image, fmt))
    plain = client.predict("mnist", data=png_of_pixels(digit))
    assert unusual.status_code == 200, unusual.text
    assert unusual.json()["label"] == plain.json()["label"]
