import numpy as np
import pytest

from handlers.transforms.text import tokenize
from training.data import vader
from training.sentiment import DOMAINS, load_domain, split_domains


def test_snippets_are_labelled_by_the_sign_of_their_rating_without_near_neutral_ones():
    rating_of = vader.mean_rating_per_text("amazon_reviews")
    data = vader.load_vader_domain("amazon_reviews")
    assert len(data.texts) == len(set(data.texts)) > 2_500
    assert all(abs(rating_of[text]) >= vader.NEUTRAL_CUT for text in data.texts)
    assert all((rating_of[text] > 0) == bool(label) for text, label in zip(data.texts, data.labels))
    assert sum(abs(r) < vader.NEUTRAL_CUT for r in rating_of.values()) > 500  # the cut really drops something


def test_every_vader_domain_has_both_classes():
    for domain in vader.DOMAIN_FILES:
        counts = np.bincount(vader.load_vader_domain(domain).labels, minlength=2)
        assert counts.min() > 500, (domain, counts)


def test_movie_reviews_are_in_no_training_or_validation_split():
    assert "movie_reviews" not in DOMAINS
    parts = split_domains({name: load_domain(name) for name in DOMAINS}, limit=None, seed=0)
    seen = {text for split in parts.values() for texts, _ in split[:2] for text in texts}
    movie_texts = set(vader.read_rated_snippets("movie_reviews")[0])
    assert len(movie_texts) > 10_000 and not seen & movie_texts


def test_lexicon_words_are_labelled_by_sign_and_tokenize():
    data = vader.load_vader_lexicon()
    label_of = dict(zip(data.texts, data.labels))
    assert label_of["masterpiece"] == 1 and label_of["boring"] == 0
    assert all(tokenize(word) for word in data.texts)


def test_a_corrupted_cached_download_is_refused(tmp_path):
    (tmp_path / vader.SDIST).write_bytes(b"not the real archive")
    with pytest.raises(SystemExit, match="SHA-256"):
        vader.read_rated_snippets("vader_tweets", cache=tmp_path)
