"""The model registry for load tests and benchmarks: one small description per served model.

A model is described by its endpoint, how its requests look (content type, real held-out
inputs) and its handler class. In-process measurements and the LitServe peer call the handler's
own decode/collate/predict/encode code, so every server runs exactly the same pre/post-processing.

Adding a model is one `ModelSpec(...)` entry plus its held-out samples in deploy/samples.py.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from deploy.samples import SAMPLES, Sample

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    handler: str                          # "module:Class" of the TorchServe handler
    samples: Callable[[int], list[Sample]]  # count -> real held-out requests (never trained on)
    unit: str = "requests"                 # what one request carries, for the report ("images", "texts")

    @property
    def endpoint(self) -> str:
        return f"/predictions/{self.name}"

    def handler_class(self):
        module, cls = self.handler.split(":")
        return getattr(importlib.import_module(module), cls)

    def model_config(self) -> dict:
        return yaml.safe_load((REPO / "handlers" / "config" / f"{self.name}.yaml").read_text())


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in [
    ModelSpec("mnist", "handlers.mnist:MnistHandler", SAMPLES["mnist"], unit="images"),
    ModelSpec("sentiment", "handlers.sentiment:SentimentHandler", SAMPLES["sentiment"], unit="texts"),
    ModelSpec("resnet", "handlers.resnet:ResnetHandler", SAMPLES["resnet"], unit="images"),
]}


def torchserve_row(sample: Sample) -> dict:
    """One request as TorchServe's Python worker hands it to handle(): JSON parsed, text/* as str,
    anything else as bytearray (ts/protocol/otf_message_handler.py)."""
    if sample.content_type == "application/json":
        return {"body": json.loads(sample.body)}
    if sample.content_type.startswith("text"):
        return {"body": sample.body.decode("utf-8")}
    return {"body": bytearray(sample.body)}


def load_handler(spec: ModelSpec, model_dir: Path, batch_size: int, torch_threads: int = 1):
    """The model's real handler, initialized on `model_dir` (the exported artifacts) as a worker
    would be: same TorchScript file, same JSON side files, same model-config `handler:` section."""
    from ts.context import Context, RequestProcessor

    settings = {**(spec.model_config().get("handler") or {}), "torch_threads": torch_threads}
    manifest = {"model": {"modelName": spec.name, "serializedFile": f"{spec.name}.torchscript.pt",
                          "handler": f"{spec.name}.py"}}
    context = Context(spec.name, str(model_dir), manifest, batch_size=batch_size, gpu=None, mms_version="0.12.0",
                      model_yaml_config={"handler": settings})
    context.request_processor = [RequestProcessor({}) for _ in range(batch_size)]
    handler = spec.handler_class()()
    handler.initialize(context)
    return handler, context
