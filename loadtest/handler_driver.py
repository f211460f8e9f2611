"""A model's real TorchServe handler driven in process, without the frontend.

The in-process ceiling of the bench, the LitServe peer and the handler unit tests all call the
handler that TorchServe runs, initialised on the exported artifacts as a worker initialises it,
so every server and every test runs exactly the same pre/post-processing.
"""

from __future__ import annotations

import json
from pathlib import Path

from ts.context import Context, RequestProcessor

from training.catalog import CATALOG
from training.heldout import Sample
from training.optimize import shipped_file


def torchserve_row(sample: Sample) -> dict:
    """One request as TorchServe's Python worker hands it to handle(): JSON parsed, text/* as str,
    anything else as bytearray (ts/protocol/otf_message_handler.py)."""
    if sample.content_type == "application/json":
        return {"body": json.loads(sample.body)}
    if sample.content_type.startswith("text"):
        return {"body": sample.body.decode("utf-8")}
    return {"body": bytearray(sample.body)}


def handler_context(model_dir: Path, name: str, batch_size: int, handler_settings: dict | None = None) -> Context:
    """A real ts Context as a worker builds it: the model folder, the batch size and the
    model-config's `handler:` section."""
    manifest = {"model": {"modelName": name, "serializedFile": shipped_file(model_dir, name).name,
                          "handler": f"{name}.py"}}
    context = Context(name, str(model_dir), manifest, batch_size=batch_size, gpu=None, mms_version="0.12.0",
                      model_yaml_config={"handler": handler_settings or {}})
    context.request_processor = [RequestProcessor({}) for _ in range(batch_size)]
    return context


def load_handler(name: str, model_dir: Path, batch_size: int, torch_threads: int | None = 1):
    """The model's handler on `model_dir` (the exported artifacts) with its shipped handler settings;
    `torch_threads` None leaves torch's default."""
    entry = CATALOG[name]
    context = handler_context(model_dir, name, batch_size, {**entry.handler_settings(), "torch_threads": torch_threads})
    handler = entry.handler_class()()
    handler.initialize(context)
    return handler, context
