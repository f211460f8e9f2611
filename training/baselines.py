"""Classical baselines that the neural models must match or beat on the same split."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from handlers.transforms.text import tokenize

REGULARISATION_GRID = (0.25, 1.0, 4.0, 16.0)  # LogisticRegression's C, picked on the validation split


def tfidf_logistic_regression(train_texts: list[str], train_labels: np.ndarray, val_texts: list[str],
                              val_labels: np.ndarray) -> tuple[Pipeline, float]:
    """TF-IDF over the serving tokenizer's unigrams and bigrams + logistic regression; returns the
    pipeline with the C that scored best on validation, and that C."""
    best, best_accuracy, best_c = None, -1.0, None
    for c in REGULARISATION_GRID:
        pipeline = make_pipeline(
            TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2),
                            min_df=2, sublinear_tf=True),
            LogisticRegression(C=c, max_iter=2000),
        ).fit(train_texts, train_labels)
        accuracy = float((pipeline.predict(val_texts) == val_labels).mean())
        if accuracy > best_accuracy:
            best, best_accuracy, best_c = pipeline, accuracy, c
    return best, best_c
