"""Session fixtures shared by unit and integration tests: small real trainings and archives.

Every model is trained once per session with a small, fast configuration on its real data,
exported and archived exactly as `make train && make archive` would.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml

from training.archive import archive

REPO = Path(__file__).resolve().parents[1]

# model name -> arguments of its training entry point for the test-sized run
FAST_TRAINING = {
    "mnist": ["--epochs", "5", "--limit", "1500"],
    "sentiment": ["--epochs", "4", "--limit", "8000", "--vader-repeats", "1"],
    "resnet": ["--image-size", "32", "--budget", "40", "--val-per-class", "10", "--test-per-class", "50",
               "--pretrain-per-class", "300", "--pretrain-epochs", "2", "--head-epochs", "2", "--finetune-epochs", "3"],
}
# Long enough that concurrent test requests share a batch; the shipped config uses 5 ms.
TEST_MAX_BATCH_DELAY_MS = 150


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    for name, argv in FAST_TRAINING.items():
        importlib.import_module(f"training.{name}").main([*argv, "--out", str(root / name)])
    return root


@pytest.fixture(scope="session")
def metadata(artifacts) -> dict[str, dict]:
    return {name: json.loads((artifacts / name / "metadata.json").read_text()) for name in FAST_TRAINING}


@pytest.fixture(scope="session")
def model_store(artifacts, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("model_store")
    configs = tmp_path_factory.mktemp("model_configs")
    for name in FAST_TRAINING:
        config = yaml.safe_load((REPO / "handlers" / "config" / f"{name}.yaml").read_text())
        config["maxBatchDelay"] = TEST_MAX_BATCH_DELAY_MS
        (configs / f"{name}.yaml").write_text(yaml.safe_dump(config))
        archive(name, artifacts, store, model_config=configs / f"{name}.yaml")
    return store
