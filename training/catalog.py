"""The model catalog: the one list of the models this repository trains and serves.

A model is its training module `training/<name>.py`, its handler `handlers/<name>.py`, its
model-config `handlers/config/<name>.yaml`, its transforms under `handlers/transforms/`, and one
entry below. The Makefile, the test fixtures, the hostile corpus, the load tests, the bench,
`make predict` and `make verify` all iterate over this list; tests/unit/test_catalog.py checks
that every entry is complete and that no other file keeps a list of models.

A model is of one of two kinds. A classifier answers labels for inputs (images, texts); a
generator draws images for parameters ({"digit", "count", "seed"}) and is judged by a
classifier of the catalog (`judge`): the share of its images that earn the requested label.

Each training module provides, besides its `main(argv)` entry point:
  heldout_requests(count=None) -> list[Sample]   real client requests (a classifier's: from the held-out
                                                  test split, with their labels; a generator's: parameters,
                                                  with the label its images must earn)
  reported_figures(metadata) -> {name: accuracy}  the README's figures from one run (`make figures`)
a classifier's also
  offline_heldout(artifact_dir) -> OfflineHeldout the eager model (state_dict) on the same samples,
                                                  prepared by the training pipeline's dataset code
  quantization_plan(artifact_dir) -> QuantizationPlan  its fp32 model, scheme, data and accuracy
                                                  measure for the optimised variants (training/optimize.py)
a generator's also
  offline_generator(artifact_dir) -> nn.Module    the eager generator (state_dict): served images equal its own
and may provide figures_table(records) -> markdown, the README table of (seed, metadata) runs,
and long_requests(count) -> list[Sample], its longest normal requests (`make bench` times them).

    python -m training.catalog                   # the model names on one line (the Makefile reads this)
    python -m training.catalog --kind generator  # those of one kind
"""

from __future__ import annotations

import argparse
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    handler: str                        # "module:Class" of its TorchServe handler
    unit: str                           # what one request carries, for reports: "images", "texts"
    input_kind: str                     # "image", "text" or "params": the hostile corpus its endpoint must withstand
    fast_training_args: tuple[str, ...]  # the small, fast training configuration of `make test`
    ship_best_of: int = 1               # `make train` trains this many seeds and ships the best on validation
    latency_bound_ms: float = 25.0      # the p99 the bench's latency-bounded throughput must keep (MLPerf server)
    kind: str = "classifier"            # or "generator"
    judge: str | None = None            # a generator's judge: the classifier that labels its images

    @property
    def endpoint(self) -> str:
        return f"/predictions/{self.name}"

    @property
    def is_generator(self) -> bool:
        return self.kind == "generator"

    @property
    def speaks_v2(self) -> bool:
        """Does its handler answer the Open Inference Protocol (a signature of tensors)?"""
        return self.handler_class().signature is not None

    @property
    def v2_endpoint(self) -> str:
        """The Open Inference Protocol's REST inference route (README "Protocols")."""
        return f"/v2/models/{self.name}/infer"

    def v2_element(self, sample) -> bytes:
        """A held-out request's example as one element of the model's v2 BYTES input: the encoded
        image, or the text (UTF-8) of a {"text": ...} request."""
        if self.input_kind == "image":
            return sample.body
        return json.loads(sample.body)["text"].encode()

    @property
    def training_module(self) -> str:
        return f"training.{self.name}"

    @property
    def model_config_path(self) -> Path:
        return REPO / "handlers" / "config" / f"{self.name}.yaml"

    def model_config(self) -> dict:
        import yaml

        return yaml.safe_load(self.model_config_path.read_text())

    def handler_settings(self) -> dict:
        """The model-config's `handler:` section: the limits its handler enforces."""
        return self.model_config().get("handler") or {}

    def handler_class(self):
        module, cls = self.handler.split(":")
        return getattr(importlib.import_module(module), cls)

    def training(self):
        return importlib.import_module(self.training_module)

    def train_fast(self, out: Path) -> None:
        """Train with the small, fast configuration into `out` (the tests', the image tests', gpu-check's)
        and add its int8 variant, as `make train` does."""
        from training.optimize import optimize  # it reads this catalog

        judge = ("--judge", str(Path(out).parent / self.judge)) if self.judge else ()
        self.training().main([*self.fast_training_args, *judge, "--out", str(out)])
        if not self.is_generator:  # a generator ships fp32: no accuracy gate to judge a quantised one by
            optimize(self.name, out)

    def heldout_requests(self, count: int | None = None):
        return self.training().heldout_requests(count)

    def long_requests(self, count: int) -> list:
        """The model's long held-out requests for latency measurements, or [] if it has none."""
        hook = getattr(self.training(), "long_requests", None)
        return hook(count) if hook else []


CATALOG: dict[str, ModelEntry] = {entry.name: entry for entry in [
    ModelEntry("mnist", "handlers.mnist:MnistHandler", unit="images", input_kind="image",
               fast_training_args=("--epochs", "5", "--limit", "1500")),
    ModelEntry("sentiment", "handlers.sentiment:SentimentHandler", unit="texts", input_kind="text",
               fast_training_args=("--epochs", "4", "--limit", "8000", "--vader-repeats", "1",
                                   "--full-length-reviews", "400"),
               ship_best_of=3),
    ModelEntry("resnet", "handlers.resnet:ResnetHandler", unit="images", input_kind="image",
               fast_training_args=("--image-size", "32", "--budget", "40", "--val-per-class", "10",
                                   "--test-per-class", "50", "--pretrain-per-class", "300", "--pretrain-epochs", "2",
                                   "--head-epochs", "4", "--finetune-epochs", "3"),
               latency_bound_ms=100.0),
    ModelEntry("digitgen", "handlers.digitgen:DigitgenHandler", unit="images", input_kind="params",
               fast_training_args=("--epochs", "12", "--limit", "1600", "--lr", "8e-4", "--quality-per-class", "100",
                                  "--threads", "2"),
               kind="generator", judge="mnist"),
]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the catalog's model names, on one line")
    parser.add_argument("--kind", choices=("classifier", "generator"))
    parser.add_argument("--judges", action="store_true", help="each generator as generator=its judge")
    args = parser.parse_args()
    if args.judges:
        print(" ".join(f"{name}={entry.judge}" for name, entry in CATALOG.items() if entry.is_generator))
    else:
        print(" ".join(name for name, entry in CATALOG.items() if args.kind in (None, entry.kind)))
