import json

import pytest
import torch

from handlers.transforms.errors import InputError
from handlers.transforms.text import (
    NUMBER, PAD, UNK, URL, USER, Vocabulary, build_vocabulary, combine_chunks, decode_utf8, document_response,
    pack_sentences, pad_batch, probabilities_to_response, score_documents, sentence_spans, tokenize, validate_text,
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


REVIEW = ('A slow start. The plot, "borrowed" from an old novel, drags!<br /><br />But the ending?  '
          'Wonderful...\nI laughed, I cried')


def test_sentences_end_at_stops_line_breaks_and_html_breaks():
    spans = sentence_spans(REVIEW)
    assert [REVIEW[start:end] for start, end in spans] == [
        "A slow start.", 'The plot, "borrowed" from an old novel, drags!', "But the ending?", "Wonderful...",
        "I laughed, I cried"]


def test_html_breaks_are_not_words():
    assert "br" not in tokenize(REVIEW)


def test_a_text_that_fits_is_one_chunk_with_the_ids_training_reads():
    vocabulary = small_vocabulary(max_tokens=50)
    document = vocabulary.encode_document(REVIEW)
    assert document.chunks == [vocabulary.encode(REVIEW)] and document.sentence_spans is None


def test_a_long_text_is_read_whole_in_chunks_of_whole_sentences():
    vocabulary = small_vocabulary(max_tokens=8)
    document = vocabulary.encode_document(REVIEW)
    sentences = [vocabulary.ids(REVIEW[start:end]) for start, end in sentence_spans(REVIEW)]
    assert [len(ids) for ids in sentences] == [3, 9, 4, 1, 4]
    # every token is read once; the 9-token sentence is cut, the others are never split
    assert [ids for chunk in document.chunks for ids in chunk] == [ids for s in sentences for ids in s]
    assert [len(chunk) for chunk in document.chunks] == [3, 8, 1 + 4 + 1, 4]


def test_packing_joins_consecutive_sentences_up_to_the_limit():
    assert pack_sentences([[1, 2], [3], [4, 5, 6], [7] * 7], 4) == [[1, 2, 3], [4, 5, 6], [7] * 4, [7] * 3]


def test_per_sentence_scores_add_each_sentence_as_a_model_input():
    vocabulary = small_vocabulary(max_tokens=50)
    document = vocabulary.encode_document(REVIEW, sentences=True)
    assert document.sentence_spans == sentence_spans(REVIEW)
    assert document.model_inputs() == [vocabulary.encode(REVIEW)] + [
        vocabulary.ids(REVIEW[start:end]) for start, end in sentence_spans(REVIEW)]


def test_one_chunk_scores_its_own_softmax_and_tokens_weigh_equally():
    logits = torch.tensor([[0.3, 2.0]])
    assert torch.allclose(combine_chunks(logits, torch.tensor([7])), logits[0].softmax(0), atol=1e-6)
    two = torch.tensor([[0.0, 2.0], [1.0, 0.0]])  # log-odds +2 over 10 tokens and -1 over 30: mean -0.25
    positive = float(combine_chunks(two, torch.tensor([10, 30]))[1])
    assert positive == pytest.approx(float(torch.sigmoid(torch.tensor(-0.25))), abs=1e-6)


def test_scores_go_back_to_their_documents_and_sentences():
    vocabulary = small_vocabulary(max_tokens=8)
    documents = [vocabulary.encode_document("love it"), vocabulary.encode_document(REVIEW, sentences=True)]
    rows = sum(len(document.model_inputs()) for document in documents)
    logits = torch.arange(2.0 * rows).reshape(rows, 2) % 3
    first, second = score_documents(documents, logits)
    assert torch.allclose(first.probabilities, logits[0].softmax(0)) and first.sentences is None
    chunks = len(documents[1].chunks)
    assert [span for span, _ in second.sentences] == sentence_spans(REVIEW)
    assert torch.allclose(second.sentences[0][1], logits[1 + chunks].softmax(0))
    response = document_response(second)
    assert set(response) == {"label", "score", "sentences"} and len(response["sentences"]) == 5
    assert set(response["sentences"][0]) == {"start", "end", "label", "score"}
