"""Comparing sentiment answers in tests."""

from __future__ import annotations


def same_answers(first, second, atol: float = 1e-5) -> bool:
    """Equal labels and scores up to float noise (batch shapes change the summation order); each side is one
    answer or a list of answers."""
    first, second = (answers if isinstance(answers, list) else [answers] for answers in (first, second))
    return len(first) == len(second) and all(
        a["label"] == b["label"] and abs(a["score"] - b["score"]) <= atol for a, b in zip(first, second))
