import json

import pytest
import torch
from ts.context import RequestProcessor

from handlers.sentiment import SentimentHandler
from handlers.transforms.text import pad_batch
from tests.handler_context import initialized, statuses
from tests.heldout import sentiment_test_tweets
from tests.texts import same_answers


@pytest.fixture(scope="module")
def served(artifacts):
    return initialized(SentimentHandler, artifacts / "sentiment", "sentiment", batch=8)


def handle(served, rows: list[dict]) -> tuple[list, list[int]]:
    """Answers and HTTP statuses of one batch, with fresh per-request state as TorchServe gives it."""
    handler, context = served
    context.request_processor = [RequestProcessor({}) for _ in rows]
    return handler.handle(rows, context), statuses(context, len(rows))


def answer(served, body):
    answers, codes = handle(served, [{"body": body}])
    return answers[0], codes[0]


def test_plain_text_json_object_and_utf8_bytes_get_the_same_answer(served):
    text = sentiment_test_tweets()[0][0]
    answers = [answer(served, body) for body in (text, {"text": text}, bytearray(text.encode()),
                                                 bytearray(json.dumps({"text": text}).encode()))]
    assert all(status == 200 for _, status in answers)
    assert all(result == answers[0][0] for result, _ in answers)
    assert answers[0][0]["label"] in ("positive", "negative") and 0.5 <= answers[0][0]["score"] <= 1


def test_json_list_gets_one_answer_per_text_in_order(served):
    texts = list(sentiment_test_tweets()[0][:5])
    answers, status = answer(served, texts)
    assert status == 200 and len(answers) == 5
    assert same_answers(answers, [answer(served, text)[0] for text in texts])
    assert same_answers(answer(served, bytearray(json.dumps(texts).encode()))[0], answers)


def test_answers_equal_the_model_on_a_padded_batch(served):
    handler, _ = served
    texts = list(sentiment_test_tweets()[0][:6])
    answers, _ = handle(served, [{"body": text} for text in texts])
    with torch.inference_mode():
        probabilities = handler.model(*pad_batch([handler.vocabulary.encode(t) for t in texts])).softmax(1)
    for row, result in zip(probabilities, answers):
        assert result["label"] == ("positive" if row[1] > row[0] else "negative")
        assert result["score"] == pytest.approx(float(row.max()), abs=1e-5)


def test_batch_with_bad_items_answers_each_request_on_its_own(served):
    good = sentiment_test_tweets()[0][:2]
    batch = [{"body": good[0]}, {"body": "   "}, {"body": bytearray(b"caf\xe9 bad")}, {"body": {"txt": "hi"}},
             {"body": ["fine", ""]}, {"body": bytearray(b'{"text": "unterminated')}, {"body": [good[1]]},
             {"body": 12}]
    answers, codes = handle(served, batch)
    assert codes == [200, 400, 400, 400, 400, 400, 200, 400]
    assert "empty or only whitespace" in answers[1]["message"]
    assert "not valid UTF-8" in answers[2]["message"]
    assert "txt" in answers[3]["message"]
    assert answers[4]["message"] == "texts[1] is empty or only whitespace"
    assert "not valid JSON" in answers[5]["message"]
    assert "must be a string" in answers[7]["message"]
    assert same_answers(answers[0], answer(served, good[0])[0]) and same_answers(answers[6], answer(served, good[1])[0])


def test_limits_come_from_model_config(artifacts):
    handler, context = initialized(SentimentHandler, artifacts / "sentiment", "sentiment", batch=3,
                                   handler_settings={"max_text_chars": 20, "max_texts_per_request": 2})
    answers = handler.handle([{"body": "a" * 21}, {"body": ["one", "two", "three"]}, {"body": "a" * 20}], context)
    assert statuses(context, 3) == [413, 413, 200]
    assert "limit is 20" in answers[0]["message"] and "limit is 2" in answers[1]["message"]


def test_text_longer_than_max_tokens_is_read_up_to_max_tokens(served):
    handler, _ = served
    limit = handler.vocabulary.max_tokens
    head = " ".join(["great"] * limit)
    assert answer(served, head + " awful" * 50) == answer(served, head)


def test_empty_list_and_missing_body_get_400(served):
    assert answer(served, [])[1] == 400
    answers, codes = handle(served, [{}])
    assert codes == [400] and answers[0]["message"].startswith("empty body")


def test_vocabulary_is_loaded_from_the_model_directory(served, artifacts):
    handler, _ = served
    assert handler.vocabulary.tokens == json.loads((artifacts / "sentiment" / "vocabulary.json").read_text())["tokens"]
    assert isinstance(handler.model, torch.jit.ScriptModule)
