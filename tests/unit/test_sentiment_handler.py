import json

import pytest
import torch
from ts.context import RequestProcessor

from handlers import sentiment as sentiment_handler
from handlers.sentiment import SentimentHandler
from handlers.transforms.text import pad_batch
from tests.handler_context import initialized, statuses
from tests.heldout import sentiment_test_tweets
from tests.texts import same_answers
from training.sentiment import lstm_probabilities


@pytest.fixture(scope="module")
def served(artifacts):
    return initialized(SentimentHandler, artifacts / "sentiment", "sentiment", batch=8)


def handle(served, rows: list[dict], headers: list[dict] | None = None) -> tuple[list, list[int]]:
    """Answers and HTTP statuses of one batch, with fresh per-request state as TorchServe gives it."""
    handler, context = served
    context.request_processor = [RequestProcessor(header) for header in headers or [{} for _ in rows]]
    return handler.handle(rows, context), statuses(context, len(rows))


def answer(served, body, headers: dict | None = None):
    answers, codes = handle(served, [{"body": body}], [headers or {}])
    return answers[0], codes[0]


def positive_probability(handler, ids: list[int]) -> float:
    with torch.inference_mode():
        return float(handler.model(*pad_batch([ids])).softmax(1)[0, 1])


def review_that_turns(handler) -> tuple[str, int]:
    """A review of held-out tweets, one per line: the model's most positive ones first, past the first
    max_tokens tokens, then its most negative ones, twice as many tokens. Returns it and the number of
    tokens of its positive opening."""
    texts = sentiment_test_tweets()[0]
    vocabulary = handler.vocabulary
    ranked = sorted(texts, key=lambda text: positive_probability(handler, vocabulary.encode(text)))
    opening, closing = [], []
    for text in reversed(ranked):
        if sum(len(vocabulary.ids(t)) for t in opening) > vocabulary.max_tokens + 10:
            break
        opening.append(text)
    opening_tokens = sum(len(vocabulary.ids(t)) for t in opening)
    for text in ranked:
        if sum(len(vocabulary.ids(t)) for t in closing) > 2 * opening_tokens:
            break
        closing.append(text)
    return "\n".join(opening + closing), opening_tokens


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


def test_empty_list_and_missing_body_get_400(served):
    assert answer(served, [])[1] == 400
    answers, codes = handle(served, [{}])
    assert codes == [400] and answers[0]["message"].startswith("empty body")


def test_vocabulary_is_loaded_from_the_model_directory(served, artifacts):
    handler, _ = served
    assert handler.vocabulary.tokens == json.loads((artifacts / "sentiment" / "vocabulary.json").read_text())["tokens"]
    assert isinstance(handler.model, torch.jit.ScriptModule)


def test_a_long_review_is_judged_on_its_whole_text(served):
    handler, _ = served
    review, opening_tokens = review_that_turns(handler)
    assert opening_tokens > handler.vocabulary.max_tokens  # the first max_tokens tokens are all positive tweets
    first_tokens_only = positive_probability(handler, handler.vocabulary.encode(review))
    result, status = answer(served, {"text": review})
    assert status == 200 and first_tokens_only > 0.5, first_tokens_only  # how the service read it before
    assert result["label"] == "negative", result


def test_served_documents_equal_the_training_pipelines_reading(served):
    handler, _ = served
    review, _ = review_that_turns(handler)
    texts = [review, review[: len(review) // 2], sentiment_test_tweets()[0][3]]
    offline = lstm_probabilities(handler.model, handler.vocabulary, texts)
    answers, _ = answer(served, texts)
    for result, row in zip(answers, offline):
        assert result["label"] == ("positive" if row[1] > row[0] else "negative")
        assert result["score"] == pytest.approx(float(row.max()), abs=1e-5)


def test_per_sentence_scores_come_with_offsets_when_asked(served):
    handler, _ = served
    review = "The seats were awful. The crew was lovely and kind!\nI would fly with them again"
    for body, headers in (({"text": review, "sentences": True}, {}), (review, {"X-Sentences": "true"}),
                          ([review], {"x-sentences": "TRUE"})):
        result, status = answer(served, body, headers)
        result = result[0] if isinstance(result, list) else result
        assert status == 200
        sentences = result["sentences"]
        assert [review[s["start"]:s["end"]] for s in sentences] == [
            "The seats were awful.", "The crew was lovely and kind!", "I would fly with them again"]
        for sentence in sentences:  # each scored as if it were sent alone
            assert same_answers({k: sentence[k] for k in ("label", "score")},
                                answer(served, review[sentence["start"]:sentence["end"]])[0])
        assert same_answers({k: result[k] for k in ("label", "score")}, answer(served, review)[0])
    assert "sentences" not in answer(served, {"text": review, "sentences": False})[0]
    assert "sentences" not in answer(served, review, {"X-Sentences": "false"})[0]


@pytest.mark.parametrize("body, headers, words", [
    ({"text": "fine", "sentences": "yes"}, {}, "sentences must be true or false"),
    ("fine", {"X-Sentences": "1"}, "X-Sentences must be true or false"),
    ({"text": "fine", "sentence": True}, {}, "got keys ['sentence', 'text']"),
])
def test_a_bad_sentences_option_is_refused(served, body, headers, words):
    result, status = answer(served, body, headers)
    assert status == 400 and words in result["message"]


def test_all_texts_of_a_request_share_a_character_limit(artifacts):
    handler, context = initialized(SentimentHandler, artifacts / "sentiment", "sentiment", batch=2,
                                   handler_settings={"max_text_chars": 100, "max_request_chars": 150})
    context.request_processor = [RequestProcessor({}), RequestProcessor({})]
    answers = handler.handle([{"body": ["a" * 80, "b" * 80]}, {"body": ["a" * 80, "b" * 70]}], context)
    assert statuses(context, 2) == [413, 200]
    assert answers[0]["message"] == "160 characters in one request; the limit is 150"


def test_a_batch_of_many_chunks_is_computed_in_passes_with_the_same_answers(served, monkeypatch):
    handler, _ = served
    review, _ = review_that_turns(handler)
    bodies = [{"text": review, "sentences": True}, review[: len(review) // 3], sentiment_test_tweets()[0][5]]
    whole, _ = handle(served, [{"body": body} for body in bodies])
    monkeypatch.setattr(sentiment_handler, "MAX_ROWS_PER_PASS", 2)  # a review here is ~6 chunks + sentences
    in_passes, codes = handle(served, [{"body": body} for body in bodies])
    assert codes == [200] * 3
    for first, second in zip(whole, in_passes):
        assert same_answers(first, second)
        assert [s["start"] for s in first.get("sentences", [])] == [s["start"] for s in second.get("sentences", [])]
