"""Classical baselines that the neural models must match or beat on the same split."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from handlers.transforms.text import tokenize
from training.data.glove import WordVectors

REGULARISATION_GRID = (0.25, 1.0, 4.0, 16.0)  # LogisticRegression's C, picked on the validation split


def best_on_validation(features, train_texts: list[str], train_labels: np.ndarray, val_texts: list[str],
                       val_labels: np.ndarray) -> tuple[Pipeline, float]:
    """`features()` (a fresh transformer of texts) + logistic regression, with the C of the grid that
    scores best on validation; returns the fitted pipeline and that C."""
    best, best_accuracy, best_c = None, -1.0, None
    for c in REGULARISATION_GRID:
        pipeline = make_pipeline(*features(), LogisticRegression(C=c, max_iter=2000)).fit(train_texts, train_labels)
        accuracy = float((pipeline.predict(val_texts) == val_labels).mean())
        if accuracy > best_accuracy:
            best, best_accuracy, best_c = pipeline, accuracy, c
    return best, best_c


def tfidf_logistic_regression(train_texts, train_labels, val_texts, val_labels) -> tuple[Pipeline, float]:
    """TF-IDF over the serving tokenizer's unigrams and bigrams + logistic regression."""
    def features():
        return [TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2),
                                min_df=2, sublinear_tf=True)]
    return best_on_validation(features, train_texts, train_labels, val_texts, val_labels)


def glove_average_logistic_regression(vectors: WordVectors, train_texts, train_labels, val_texts,
                                      val_labels) -> tuple[Pipeline, float]:
    """The mean GloVe vector of a text's tokens (the serving tokenizer; words GloVe lacks are skipped)
    + logistic regression: what word vectors give without any order or composition."""
    def average(texts):
        rows = []
        for text in texts:
            found = [vector for vector in map(vectors.vector_of, tokenize(text)) if vector is not None]
            rows.append(np.mean(found, axis=0) if found else np.zeros(vectors.dim, dtype=np.float32))
        return np.stack(rows)

    def features():
        return [FunctionTransformer(average), StandardScaler()]
    return best_on_validation(features, train_texts, train_labels, val_texts, val_labels)
