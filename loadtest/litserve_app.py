"""The peer server for the benchmark: LitServe serving a model through its own TorchServe handler.

    python -m loadtest.litserve_app --model mnist --model-dir artifacts/mnist --port 8000

Same TorchScript file, same decode/collate/predict/encode code and the same batch size and
delay as the model-config, so the comparison measures the servers, not the models. Clients send
the token from $LITSERVE_TOKEN as "Authorization: Bearer ...", as with TorchServe.
"""
# No `from __future__ import annotations`: LitServe hands decode_request's annotation to FastAPI,
# which must see the real type to pass the raw body through.

import argparse
import os
from pathlib import Path
from typing import Annotated, Any

import litserve as ls
from fastapi import Body, Header, HTTPException

from handlers.transforms.errors import InputError
from loadtest.handler_driver import load_handler
from training.catalog import CATALOG


class HandlerAPI(ls.LitAPI):
    def __init__(self, model: str, model_dir: Path, batch_size: int, batch_timeout_s: float, token: str,
                 torch_threads: int | None):
        super().__init__(max_batch_size=batch_size, batch_timeout=batch_timeout_s, api_path=f"/predictions/{model}")
        self.model_name, self.model_dir, self.token, self.torch_threads = model, model_dir, token, torch_threads

    def setup(self, device):
        self.handler, self.context = load_handler(self.model_name, self.model_dir, self.max_batch_size,
                                                  torch_threads=self.torch_threads)

    def authorize(self, authorization: Annotated[str, Header()] = ""):
        if authorization != f"Bearer {self.token}":
            raise HTTPException(status_code=401, detail="missing or wrong bearer token")

    def decode_request(self, request: Annotated[Any, Body()]):
        # FastAPI passes JSON bodies parsed and anything else as bytes, as TorchServe does.
        payload = bytearray(request) if isinstance(request, bytes) else request
        try:
            items, many = self.handler.split_request(payload, {})
            if many:
                raise InputError("the LitServe peer takes one example per request")
            return self.handler.decode_request(items[0])
        except InputError as error:
            raise HTTPException(status_code=error.status, detail=error.message) from None

    def batch(self, inputs):
        return list(inputs)

    def predict(self, examples):
        if self.max_batch_size == 1:  # without batching LitServe hands over one example, not a list
            return self.handler.predict([examples])[0]
        return self.handler.predict(examples)

    def unbatch(self, outputs):
        return list(outputs)

    def encode_response(self, output):
        return output


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=sorted(CATALOG))
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="inference processes")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batch-delay-ms", type=float, default=5)
    parser.add_argument("--api-servers", type=int, default=None, help="default: LitServe's (one per worker)")
    parser.add_argument("--torch-threads", type=int, default=None, help="per worker; default: torch's")
    args = parser.parse_args(argv)
    token = os.environ["LITSERVE_TOKEN"]
    api = HandlerAPI(args.model, args.model_dir, args.batch_size, args.batch_delay_ms / 1000, token,
                     args.torch_threads)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=args.workers, timeout=30)
    server.run(host="127.0.0.1", port=args.port, num_api_servers=args.api_servers, log_level="warning",
               generate_client_file=False)


if __name__ == "__main__":
    main()
