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
from training.data.mnist import load_mnist_digits, mnist_splits


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--key-file", type=Path, default=Path("key_file.json"))
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args(argv)
    client = TorchServeClient(inference_url=args.url, key_file=args.key_file)
    predict_mnist(client, args.count)


if __name__ == "__main__":
    main()
