"""The digit generator: its training run, its quality measures, and its handler called directly."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from ts.context import RequestProcessor

from handlers.digitgen import DigitgenHandler, wants_png
from handlers.transforms import generation
from handlers.transforms.errors import InputError
from loadtest.handler_driver import handler_context
from loadtest.verify import decode_images
from tests.handler_context import initialized, statuses
from training import digitgen
from training.catalog import CATALOG

MAX_COUNT = CATALOG["digitgen"].handler_settings()["max_count"]


def request(**fields) -> dict:
    return {"body": bytearray(json.dumps(fields).encode())}


@pytest.fixture(scope="module")
def handler(artifacts):
    return initialized(DigitgenHandler, artifacts / "digitgen", "digitgen", batch=4)[0]


@pytest.fixture
def context(artifacts):
    """A fresh context per batch, as a worker builds one per batch (statuses, headers)."""
    return handler_context(artifacts / "digitgen", "digitgen", batch_size=4)


def test_a_small_training_run_draws_digits_the_mnist_classifier_recognises(metadata):
    quality = metadata["digitgen"]["quality"]
    # chance is 0.10; the full run's worst digit is above 0.95 (README)
    assert quality["fidelity_mean"] >= 0.7, quality
    assert quality["diversity_ratio_min"] >= 0.5, quality  # not collapsed onto one digit per class
    assert quality["frechet_distance_classifier_features"] > quality["frechet_distance_real_train_vs_heldout"]


def test_training_writes_loss_curves_and_a_sample_grid_per_epoch(artifacts, metadata):
    out = artifacts / "digitgen"
    epochs = metadata["digitgen"]["history"]["epochs_run"]
    history = json.loads((out / "history.json").read_text())
    assert len(history["generator_loss"]) == len(history["discriminator_loss"]) == epochs
    assert sorted(path.name for path in (out / "samples").glob("*.png")) == [f"epoch_{n:03d}.png"
                                                                          for n in range(1, epochs + 1)]
    grid = Image.open(out / "samples.png")
    assert grid.size == (10 * 30 - 2, 10 * 30 - 2) and grid.mode == "L"
    assert metadata["digitgen"]["torchscript_parity_max_abs_delta"] <= 1e-5
    assert metadata["digitgen"]["training"]["cpu_seconds"] > 0


def test_frechet_distance_is_zero_for_one_set_and_matches_the_matrix_square_root_formula():
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(400, 12)), rng.normal(0.5, 2.0, size=(300, 12)) @ rng.normal(size=(12, 12))
    assert abs(digitgen.frechet_distance(first, first)) < 1e-8
    mean_delta = first.mean(0) - second.mean(0)
    cov_first, cov_second = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    reference = mean_delta @ mean_delta + np.trace(cov_first + cov_second - 2 * linalg.sqrtm(cov_first @ cov_second).real)
    assert digitgen.frechet_distance(first, second) == pytest.approx(reference, rel=1e-6)


def test_diversity_is_zero_for_copies_and_grows_with_differences():
    same = np.repeat(np.full((1, 28, 28), 200, np.uint8), 5, axis=0)
    assert digitgen.mean_pairwise_distance(same) == 0
    varied = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    assert digitgen.mean_pairwise_distance(varied) > 5


@pytest.mark.parametrize("fields, status, words", [
    ({"digit": 10}, 400, "digit must be at most 9"),
    ({"digit": "3"}, 400, "digit must be an integer"),
    ({"digit": 2.0}, 400, "digit must be an integer"),
    ({"count": 0}, 400, "count must be at least 1"),
    ({"count": MAX_COUNT + 1}, 413, f"count must be at most {MAX_COUNT}"),
    ({"seed": -1}, 400, "seed must be at least 0"),
    ({"seed": None, "size": 3}, 400, "unknown field(s) size"),
])
def test_bad_parameters_get_a_message_naming_them(handler, context, fields, status, words):
    answer = handler.handle([request(**fields)], context)[0]
    assert statuses(context, 1) == [status] and words in answer["message"], answer


def test_one_bad_request_in_a_batch_fails_alone(handler, context):
    answers = handler.handle([request(digit=3, count=2, seed=1), request(digit=11), {"body": bytearray(b"{")},
                              request(digit=5, seed=2)], context)
    assert statuses(context, 4) == [200, 400, 400, 200]
    assert (answers[0]["digit"], len(answers[0]["images"]), answers[3]["digit"]) == (3, 2, 5)
    alone = handler.handle([request(digit=3, count=2, seed=1)], context)[0]
    assert alone == answers[0]


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_images(handler, context):
    first, again, other = handler.handle([request(digit=7, count=3, seed=123), request(digit=7, count=3, seed=123),
                                          request(digit=7, count=3, seed=124)], context)
    assert first == again and first["seed"] == 123
    assert not np.array_equal(decode_images(first), decode_images(other))


def test_a_missing_seed_and_digit_are_drawn_and_named_so_the_answer_can_be_repeated(handler, context):
    drawn = [handler.handle([request(count=2)], context)[0] for _ in range(20)]
    assert len({answer["seed"] for answer in drawn}) == 20
    digits = {answer["digit"] for answer in drawn}
    # drawn, not a fixed default: 20 uniform draws land on 2 or fewer digits with p < 1e-11
    assert digits <= set(range(10)) and len(digits) >= 3, digits
    for answer in drawn[:3]:  # the named seed repeats the answer, the digit included
        assert handler.handle([request(count=2, seed=answer["seed"])], context)[0] == answer


def test_accept_image_png_answers_one_grid_png(handler, context):
    as_json = handler.handle([request(digit=4, count=5, seed=9)], context)[0]
    assert context.get_response_content_type(0) == "application/json"  # no Accept header: JSON
    context.request_processor[0] = RequestProcessor({"Accept": "image/png"})
    grid_png = handler.handle([request(digit=4, count=5, seed=9)], context)[0]
    assert context.get_response_content_type(0) == "image/png"
    headers = context.get_response_headers(0)
    assert (headers["X-Digit"], headers["X-Seed"]) == ("4", "9")
    grid = np.asarray(Image.open(io.BytesIO(grid_png)))
    assert grid.shape == (2 * 28 + 2, 3 * 28 + 2 * 2)  # 5 images: 3 columns, 2 rows, 2-pixel gaps
    assert np.array_equal(grid[:28, 30:58], decode_images(as_json)[1])


@pytest.mark.parametrize("accept, png", [(None, False), ("*/*", False), ("application/json", False),
                                         ("image/png", True), ("text/html, image/*;q=0.8", True)])
def test_content_negotiation_picks_png_only_when_asked(accept, png):
    assert wants_png(accept) is png


def test_an_accept_header_we_cannot_answer_gets_406():
    with pytest.raises(InputError) as refused:
        wants_png("image/jpeg")
    assert refused.value.status == 406 and "image/png" in refused.value.message


def test_served_noise_is_the_seeds_alone_whatever_the_batch():
    assert torch.equal(generation.noise(5, 3), generation.noise(5, 4)[:3])
    assert not torch.equal(generation.noise(5, 1), generation.noise(6, 1))
