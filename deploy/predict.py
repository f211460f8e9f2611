"""Send a few real held-out samples to the running server and print what it answers.

    python -m deploy.predict [--url http://127.0.0.1:8080] [--key-file key_file.json] [--count 5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deploy.client import TorchServeClient
from deploy.samples import SAMPLES


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--management", default="http://127.0.0.1:8081")
    parser.add_argument("--key-file", type=Path, default=Path("key_file.json"))
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args(argv)
    client = TorchServeClient(args.url, args.management, args.key_file)
    for model in client.registered_models():
        for sample in SAMPLES[model](args.count):
            response = client.predict(model, data=sample.body, headers={"Content-Type": sample.content_type})
            answer = json.dumps(response.json())
            print(f"{model:9s} true={sample.expected:9s} HTTP {response.status_code}  "
                  f"{answer if len(answer) < 160 else answer[:157] + '...'}")


if __name__ == "__main__":
    main()
