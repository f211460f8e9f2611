"""Ask the running server about real held-out samples: each model's accuracy and a few answers.

A generator's accuracy is the share of its images that its judge, served alongside it, labels as
the digit the request asked for.

    python -m loadtest.predict [--url http://127.0.0.1:8080] [--count 100] [--examples 3]
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

import numpy as np

from deploy.client import DEFAULT_KEY_FILE, TorchServeClient
from loadtest.verify import count_correct, send_all
from training.catalog import CATALOG, ModelEntry
from training.heldout import Sample


def count_judged_right(client: TorchServeClient, entry: ModelEntry, samples: list[Sample], answers: list) -> int:
    """How many of a generator's answers hold only images its served judge labels as requested."""
    right = 0
    for sample, (status, answer) in zip(samples, answers):
        images = answer["images"] if status == 200 else []
        labels = [client.predict(entry.judge, data=base64.b64decode(image)).json()["label"] for image in images]
        right += bool(images) and all(str(label) == sample.expected for label in labels)
    return right


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--management", default="http://127.0.0.1:8081")
    parser.add_argument("--key-file", type=Path, default=DEFAULT_KEY_FILE)
    parser.add_argument("--count", type=int, default=100, help="held-out samples per model, spread over the classes")
    parser.add_argument("--examples", type=int, default=3, help="answers to print per model")
    args = parser.parse_args(argv)
    client = TorchServeClient(args.url, args.management, args.key_file)
    for model in client.registered_models():
        entry = CATALOG[model]
        samples = entry.heldout_requests(args.count)
        answers = send_all(client, model, samples)
        correct = (count_judged_right(client, entry, samples, answers) if entry.is_generator
                   else count_correct(samples, answers))
        print(f"{model}: {correct}/{len(samples)} held-out {entry.unit} answered right ({correct / len(samples):.0%})")
        for index in np.linspace(0, len(samples) - 1, args.examples).astype(int):
            status, answer = answers[index]
            text = json.dumps(answer)
            shown = text if len(text) < 140 else text[:137] + "..."
            print(f"  true={samples[index].expected:10s} HTTP {status}  {shown}")


if __name__ == "__main__":
    main()
