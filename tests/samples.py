"""One valid request body per served model, for tests that only need "a good request".

A model added to tests/conftest.py FAST_TRAINING needs an entry here (a test checks it).
"""

from __future__ import annotations

from tests.heldout import mnist_test_digits
from tests.images import png_of_pixels

SAMPLE_REQUESTS = {
    "mnist": lambda: png_of_pixels(mnist_test_digits()[0][0]),
}
