import json

import pytest
import torch

from handlers.transforms.errors import InputError
from handlers.transforms.text import (
    NUMBER, PAD, UNK, URL, USER, Vocabulary, build_vocabulary, decode_utf8, pad_batch, probabilities_to_response,
    tokenize, validate_text,
)


def small_vocabulary(max_tokens: int = 50) -> Vocabulary:
    return build_vocabulary(["I love this movie", "I hate this movie :(", "love love <url>"],
                            min_freq=1, max_size=100, max_tokens=max_tokens)


def test_tokenizer_lowercases_and_keeps_contractions_and_emoticons():
    assert tokenize("I DON'T like it :( but it's OK :-)") == ["i", "don't", "like", "it", ":(", "but", "it's",
                                                               "ok", ":-)"]
    assert tokenize("you\u2019re") == ["you're"]


def test_urls_mentions_and_numbers_become_placeholders():
    assert tokenize("@united flight 1234 at 10:30 see https://t.co/abc?x=1 or www.x.com/y") == [
        USER, "flight", NUMBER, "at", NUMBER, "see", URL, "or", URL]


def test_each_emoji_is_one_token_without_modifiers():
    assert tokenize("great \U0001F44D\U0001F3FD\u2764\ufe0f!!") == ["great", "\U0001F44D", "\u2764", "!", "!"]


def test_html_entities_hashtags_and_stretched_words_are_normalised():
    assert tokenize("#Sooooo good &amp; cheap") == ["soo", "good", "cheap"]
    assert tokenize("soooo") == tokenize("sooooooooo")


def test_empty_and_punctuation_only_text_has_no_tokens():
    assert tokenize("") == [] and tokenize("   ...  -- ") == []


def test_unknown_words_encode_as_unk_and_known_words_by_their_id():
    vocabulary = small_vocabulary()
    ids = vocabulary.encode("I adore this zyzzyva")
    assert ids == [vocabulary.index["i"], vocabulary.unk_id, vocabulary.index["this"], vocabulary.unk_id]


def test_text_without_tokens_encodes_as_one_unk():
    assert small_vocabulary().encode("...") == [small_vocabulary().unk_id]


def test_encoding_keeps_only_the_first_max_tokens():
    vocabulary = small_vocabulary(max_tokens=3)
    assert vocabulary.encode("love " * 10 + "hate") == [vocabulary.index["love"]] * 3


def test_vocabulary_starts_with_pad_and_unk_and_respects_min_freq_and_max_size():
    texts = ["a b c", "a b", "a", "d"]
    vocabulary = build_vocabulary(texts, min_freq=2, max_size=100, max_tokens=10)
    assert vocabulary.tokens == [PAD, UNK, "a", "b"]
    assert build_vocabulary(texts, min_freq=1, max_size=4, max_tokens=10).tokens == [PAD, UNK, "a", "b"]
    assert build_vocabulary(texts, min_freq=1, max_size=100, max_tokens=10).tokens == [PAD, UNK, "a", "b", "c", "d"]


def test_vocabulary_round_trips_through_json(tmp_path):
    vocabulary = small_vocabulary()
    vocabulary.save(tmp_path / "vocabulary.json")
    loaded = Vocabulary.load(tmp_path / "vocabulary.json")
    assert loaded.tokens == vocabulary.tokens and loaded.max_tokens == vocabulary.max_tokens
    assert loaded.encode("I love it") == vocabulary.encode("I love it")
    assert json.loads((tmp_path / "vocabulary.json").read_text())["tokens"][:2] == [PAD, UNK]


def test_vocabulary_without_pad_and_unk_first_is_refused():
    with pytest.raises(ValueError):
        Vocabulary(tokens=["a", PAD, UNK], max_tokens=5)


def test_padding_goes_to_the_longest_sequence_of_the_batch_and_keeps_lengths():
    tokens, lengths = pad_batch([[5, 6, 7], [8], [9, 10]])
    assert tokens.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2]
    assert tokens.dtype == lengths.dtype == torch.int64


def test_invalid_utf8_is_refused_with_its_position():
    with pytest.raises(InputError, match="not valid UTF-8 \\(byte 3\\)"):
        decode_utf8(b"abc\xff\xfe")
    assert decode_utf8(bytearray("caf\u00e9".encode())) == "caf\u00e9"


@pytest.mark.parametrize("value, status, words", [
    ("", 400, "empty"), (" \n\t ", 400, "empty"), (42, 400, "must be a string"), (None, 400, "must be a string"),
    ("x" * 11, 413, "limit is 10"),
])
def test_bad_texts_are_refused_with_a_reason(value, status, words):
    with pytest.raises(InputError, match=words) as raised:
        validate_text(value, max_chars=10)
    assert raised.value.status == status


def test_response_names_the_likelier_label_with_its_probability():
    assert probabilities_to_response(torch.tensor([0.2, 0.8])) == {"label": "positive", "score": pytest.approx(0.8)}
    assert probabilities_to_response(torch.tensor([0.9, 0.1])) == {"label": "negative", "score": pytest.approx(0.9)}


def test_curated_words_enter_the_vocabulary_even_when_rare():
    vocabulary = build_vocabulary(["good good bad"], min_freq=2, max_size=100, max_tokens=10, curated=["bad", "awful"])
    assert set(vocabulary.tokens) == {PAD, UNK, "good", "bad", "awful"}
