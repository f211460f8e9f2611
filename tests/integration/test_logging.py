"""The shipped log4j2.xml keeps per-request and per-batch lines off the request path, and
lifecycle lines on it (deploy/config/log4j2.xml)."""

from __future__ import annotations

import os

import pytest

from tests.heldout import mnist_test_digits
from tests.images import png_of_pixels

pytestmark = pytest.mark.skipif(bool(os.environ.get("SERVE_TEST_IMAGE")), reason="reads the server's log files")

PER_REQUEST_OR_BATCH = ("Sending response for jobId", "Looping backend response", "Backend response time", "result=[METRICS]",
                        "Backend received inference at")


def test_serving_writes_no_line_per_request_or_batch_but_keeps_lifecycle_lines(server, client):
    for digit in mnist_test_digits()[0][:40]:
        assert client.predict("mnist", data=png_of_pixels(digit)).status_code == 200
    assert client.predict("mnist", data=b"not an image").status_code == 415  # a rejection is not logged either
    logs = {name: (server.run_dir / "logs" / f"{name}.log").read_text() for name in ("ts_log", "model_log")}
    for name, text in logs.items():
        for line in PER_REQUEST_OR_BATCH:
            assert line not in text, f"{name} has per-request lines: {line!r}"
    # Lifecycle: every worker's start and its model load are still recorded.
    assert "Torch worker started." in logs["model_log"]
    assert "Setting default version" in logs["ts_log"] or "Model mnist loaded" in logs["ts_log"]
