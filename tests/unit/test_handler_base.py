"""handlers/base.py: a bug while decoding one request answers that request 500, not the whole batch."""

import numpy as np

from handlers.mnist import MnistHandler
from tests.handler_context import initialized, statuses
from tests.images import png_of_pixels
from training.data.mnist import load_mnist_digits, mnist_splits

SECRET = "decoder state /srv/secret/path"


class BuggyDecodeMnistHandler(MnistHandler):
    """Mnist's handler with a decode bug that one kind of request triggers."""

    def decode_request(self, payload):
        if bytes(payload).startswith(b"trigger-bug"):
            raise RuntimeError(SECRET)
        return super().decode_request(payload)


def heldout_digits_of_distinct_labels(count: int) -> list[np.ndarray]:
    pixels, labels = load_mnist_digits()
    test = mnist_splits(labels).test
    return [pixels[test[labels[test] == label][0]] for label in range(count)]


def test_bug_decoding_one_request_gets_500_and_neighbours_succeed(artifacts):
    handler, context = initialized(BuggyDecodeMnistHandler, artifacts / "mnist", "mnist", batch=4)
    digits = heldout_digits_of_distinct_labels(3)
    bodies = [png_of_pixels(digits[0]), b"trigger-bug", png_of_pixels(digits[1]), png_of_pixels(digits[2])]
    answers = handler.handle([{"body": bytearray(body)} for body in bodies], context)

    assert statuses(context, 4) == [200, 500, 200, 200]
    assert answers[1] == {"code": 500, "type": "Internal Server Error",
                          "message": "internal error while decoding the input"}
    alone = [handler.handle([{"body": bytearray(bodies[i])}], context)[0] for i in (0, 2, 3)]
    assert [answers[i]["label"] for i in (0, 2, 3)] == [answer["label"] for answer in alone]
    assert len({answer["label"] for answer in alone}) == 3  # distinct digits: a shifted answer would show
    for batched, single in zip((answers[0], answers[2], answers[3]), alone):
        assert np.allclose(list(batched["probabilities"].values()), list(single["probabilities"].values()),
                           atol=1e-5)


def test_bug_in_every_request_answers_each_500_without_running_the_model(artifacts):
    handler, context = initialized(BuggyDecodeMnistHandler, artifacts / "mnist", "mnist", batch=2)
    handler.model = None  # calling the model now would raise TypeError
    answers = handler.handle([{"body": bytearray(b"trigger-bug")}, {"body": bytearray(b"trigger-bug 2")}], context)
    assert statuses(context, 2) == [500, 500]
    assert all(SECRET not in str(answer) for answer in answers)
