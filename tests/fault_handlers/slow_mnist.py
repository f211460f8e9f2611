"""Test-only handler: the MNIST handler, except a body `sleep <seconds>` stalls the worker,
so tests can exceed the model's responseTimeout on purpose."""

import time

from handlers.mnist import MnistHandler


class SlowMnistHandler(MnistHandler):
    def decode_request(self, payload):
        if isinstance(payload, (bytes, bytearray)) and payload.startswith(b"sleep "):
            time.sleep(float(payload[len(b"sleep "):]))
        return super().decode_request(payload)
