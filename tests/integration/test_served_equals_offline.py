"""`make verify`, fast: the served answer equals the eager model's on held-out samples, per model.

The offline side is independent of the server: the exported state_dict in eager PyTorch, fed
by the training pipeline's dataset code; the served side gets the raw bytes over HTTP.
"""

from __future__ import annotations

import pytest

from loadtest.verify import PIXEL_TOLERANCE, PROBABILITY_TOLERANCE, top_answer, verify_model
from training.catalog import CATALOG

SAMPLES_PER_MODEL = 120  # spread over each model's whole held-out set; `make verify` sends all of them


@pytest.mark.parametrize("model", list(CATALOG))
def test_served_labels_and_probabilities_equal_the_eager_models(client, artifacts, model):
    verdict = verify_model(client, CATALOG[model], artifacts / model, limit=SAMPLES_PER_MODEL)
    assert verdict.count == SAMPLES_PER_MODEL
    assert verdict.passed, verdict.line()
    assert verdict.labels_agree == verdict.count
    assert verdict.max_probability_delta <= (PIXEL_TOLERANCE if CATALOG[model].is_generator else PROBABILITY_TOLERANCE)
    assert verdict.served_accuracy >= 0.6, verdict.line()  # the small test models, far above chance


def test_verify_notices_a_server_whose_answers_differ_from_the_model(client, artifacts, monkeypatch):
    """A served model that is not the exported one must fail the check, not pass it."""
    import loadtest.verify as verify

    def shifted(answer):
        label, score = top_answer(answer)
        return label, score - 2 * PROBABILITY_TOLERANCE

    monkeypatch.setattr(verify, "top_answer", shifted)
    verdict = verify_model(client, CATALOG["mnist"], artifacts / "mnist", limit=5)
    assert not verdict.passed and "offline differs" in verdict.failures[0]


@pytest.mark.parametrize("answer, expected", [
    ({"label": 7, "probabilities": {"7": 0.9, "1": 0.1}}, ("7", 0.9)),
    ({"label": "positive", "score": 0.8}, ("positive", 0.8)),
    ([{"label": "bag", "score": 0.7}, {"label": "shirt", "score": 0.2}], ("bag", 0.7)),
])
def test_top_answer_reads_every_models_answer_shape(answer, expected):
    assert top_answer(answer) == expected
