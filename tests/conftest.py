"""Session fixtures shared by every test: small real trainings, archives and one real server.

Every model of the catalog is trained once per session with its small, fast configuration on
its real data, exported and archived exactly as `make train && make archive` would. The server
is TorchServe started by the production entrypoint on free loopback ports, or (SERVE_TEST_IMAGE,
`make docker-test`) the serving image run as the README tells ops to run it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loadtest.launcher import EntrypointServer
from tests.containers import ContainerServer
from training.archive import archive
from training.catalog import CATALOG

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    if os.environ.get("SERVE_TEST_ARTIFACTS"):  # `make docker-test`: the artifacts the image's archives hold
        return Path(os.environ["SERVE_TEST_ARTIFACTS"]).resolve()
    root = tmp_path_factory.mktemp("artifacts")
    for entry in CATALOG.values():
        entry.train_fast(root / entry.name)
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


# Long enough that concurrent test requests share a batch; the shipped model-configs use 5 ms.
TEST_SETTINGS = {"SERVE_MAX_BATCH_DELAY_MS": "150"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    server = item.funcargs.get("server") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(server, (EntrypointServer, ContainerServer)):
        report.sections.append(("TorchServe logs", server.logs()))


@pytest.fixture(scope="session")
def server(request, tmp_path_factory):
    if os.environ.get("SERVE_TEST_IMAGE"):  # `make docker-test`: the same HTTP checks against the image
        with ContainerServer(os.environ["SERVE_TEST_IMAGE"], tmp_path_factory.mktemp("container")).running() as running:
            yield running
        return
    with EntrypointServer(tmp_path_factory.mktemp("torchserve"), request.getfixturevalue("model_store"),
                          list(CATALOG), TEST_SETTINGS).running() as running:
        yield running


@pytest.fixture(scope="session")
def client(server):
    return server.client()
