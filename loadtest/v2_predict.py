"""The README's tritonclient script: held-out examples of every model (a digit, a text, a
Fashion-MNIST photo) to the running server over the Open Inference Protocol, REST and gRPC.

    make run                          # or make serve: TorchServe on 127.0.0.1:8080 (HTTP) and :7070 (gRPC)
    python -m loadtest.v2_predict [--http 127.0.0.1:8080] [--grpc 127.0.0.1:7070] [--count 3]

tritonclient speaks v2 to any server that does (Triton, KServe, MLServer, this one); nothing here
knows TorchServe. The key is TorchServe's inference key (run/key_file.json; README "Security").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from deploy.client import DEFAULT_KEY_FILE, read_keys
from training.catalog import CATALOG


def classify(module, client, model: str, examples: list[bytes], token: str) -> list[str]:
    """The most likely label of each example: one BYTES input, the model's first output."""
    signature = CATALOG[model].handler_class().signature
    tensor = module.InferInput(signature.input.name, [len(examples)], "BYTES")
    tensor.set_data_from_numpy(np.array(examples, dtype=np.object_))
    result = client.infer(model, [tensor], headers={"authorization": f"Bearer {token}"})
    labels = result.as_numpy(signature.outputs[0].name).reshape(len(examples), -1)[:, 0]
    return [label.decode() if isinstance(label, bytes) else str(label) for label in labels]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http", default="127.0.0.1:8080", help="host:port of REST inference")
    parser.add_argument("--grpc", default="127.0.0.1:7070", help="host:port of gRPC inference")
    parser.add_argument("--key-file", type=Path, default=DEFAULT_KEY_FILE)
    parser.add_argument("--count", type=int, default=3, help="held-out examples per model")
    args = parser.parse_args(argv)
    token = read_keys(args.key_file)["inference"]
    clients = {"REST": (triton_http, triton_http.InferenceServerClient(args.http)),
               "gRPC": (triton_grpc, triton_grpc.InferenceServerClient(args.grpc))}
    for model, entry in ((model, entry) for model, entry in CATALOG.items() if entry.speaks_v2):
        samples = entry.heldout_requests(args.count)
        for transport, (module, client) in clients.items():
            labels = classify(module, client, model, [entry.v2_element(sample) for sample in samples], token)
            for sample, label in zip(samples, labels):
                print(f"{model:9s} v2 {transport:4s} true={sample.expected:10s} answer={label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
