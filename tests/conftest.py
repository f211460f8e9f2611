"""Session fixtures shared by unit and integration tests: small real trainings and archives.

Every model of the catalog is trained once per session with its small, fast configuration on
its real data, exported and archived exactly as `make train && make archive` would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.archive import archive
from training.catalog import CATALOG

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    for entry in CATALOG.values():
        entry.training().main([*entry.fast_training_args, "--out", str(root / entry.name)])
    return root


@pytest.fixture(scope="session")
def metadata(artifacts) -> dict[str, dict]:
    return {name: json.loads((artifacts / name / "metadata.json").read_text()) for name in CATALOG}


@pytest.fixture(scope="session")
def model_store(artifacts, tmp_path_factory) -> Path:
    """Every model archived with its shipped model-config, as `make archive` does."""
    store = tmp_path_factory.mktemp("model_store")
    for name in CATALOG:
        archive(name, artifacts, store)
    return store
